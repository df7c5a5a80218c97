//! Cron schedules: parsing an expression in a timezone, finding its ticks, and
//! deciding which ticks to fire after the scheduler was away (misfires).
//!
//! Expressions are parsed by `croner`: POSIX 5-field crontabs, an optional
//! leading seconds field (6 fields), an optional trailing year, `L`/`W`/`#`,
//! and the `@hourly`-style aliases. Ticks are computed in the schedule's IANA
//! timezone and stored in UTC. Daylight-saving transitions follow Vixie cron
//! (as croner implements it): a fixed-time tick that falls into the
//! spring-forward gap fires at the first valid time after the gap; in the
//! repeated fall-back hour a fixed-time tick fires once (at its first
//! occurrence) while wildcard and step fields fire on each pass.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, TimeDelta, Timelike, Utc};
use chrono_tz::Tz;
use croner::Cron;
use croner::parser::{CronParser, Seconds};
use serde::{Deserialize, Serialize};

use crate::UnknownVariant;

/// Longest cron expression accepted.
pub const MAX_CRON_LEN: usize = 200;

/// Most ticks a single planning step fires for one schedule; a guard against
/// pathological settings, far above what the validated limits allow.
const MAX_FIRE: usize = 10_000;

/// Missed ticks are counted up to this many (the count feeds a metric).
const MAX_COUNTED: u64 = 100_000;

/// Why an expression or timezone was refused. Each names the field at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    #[error("invalid cron expression `{expression}`: {reason}")]
    Cron { expression: String, reason: String },
    #[error("cron expression `{0}` never fires")]
    NeverFires(String),
    #[error("unknown timezone `{0}`: use an IANA name such as `Europe/Helsinki` or `UTC`")]
    Timezone(String),
}

impl ScheduleError {
    /// The request field the error is about (`cron` or `timezone`).
    pub fn field(&self) -> &'static str {
        match self {
            ScheduleError::Cron { .. } | ScheduleError::NeverFires(_) => "cron",
            ScheduleError::Timezone(_) => "timezone",
        }
    }
}

/// A parsed cron expression bound to a timezone.
#[derive(Debug, Clone)]
pub struct CronSchedule {
    cron: Cron,
    timezone: Tz,
}

impl CronSchedule {
    /// Parses `expression` in `timezone` (an IANA name). Refuses expressions
    /// that never fire again (such as `0 0 30 2 *`).
    pub fn parse(expression: &str, timezone: &str) -> Result<Self, ScheduleError> {
        let timezone: Tz = timezone
            .parse()
            .map_err(|_| ScheduleError::Timezone(timezone.to_owned()))?;
        let cron_error = |reason: String| ScheduleError::Cron {
            expression: expression.to_owned(),
            reason,
        };
        if expression.len() > MAX_CRON_LEN {
            return Err(cron_error(format!("longer than {MAX_CRON_LEN} characters")));
        }
        let cron = CronParser::builder()
            .seconds(Seconds::Optional)
            .build()
            .parse(expression)
            .map_err(|e| cron_error(e.to_string()))?;
        let schedule = Self { cron, timezone };
        if schedule.next_after(Utc::now()).is_none() {
            return Err(ScheduleError::NeverFires(expression.to_owned()));
        }
        Ok(schedule)
    }

    /// The timezone ticks are computed in.
    pub fn timezone(&self) -> Tz {
        self.timezone
    }

    /// A plain-English description ("At 02:30 AM").
    pub fn describe(&self) -> String {
        self.cron.describe()
    }

    /// The first tick strictly after `t`.
    pub fn next_after(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.search(t, false, true)
    }

    /// The first tick at or after `t`.
    fn at_or_after(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.search(t, true, true)
    }

    /// The last tick strictly before `t`.
    fn before(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.search(t, false, false)
    }

    /// croner searches whole seconds: it drops a start time's fraction. A
    /// fractional start is therefore moved to the whole second on the search's
    /// side of it (which is then included), so "after 04.7" never answers 04.
    fn search(&self, t: DateTime<Utc>, inclusive: bool, forward: bool) -> Option<DateTime<Utc>> {
        let whole = t.with_nanosecond(0).unwrap_or(t);
        let (start, inclusive) = match (whole == t, forward) {
            (true, _) => (t, inclusive),
            (false, true) => (whole + TimeDelta::seconds(1), true),
            (false, false) => (whole, true),
        };
        let local = start.with_timezone(&self.timezone);
        let found = if forward {
            self.cron.find_next_occurrence(&local, inclusive)
        } else {
            self.cron.find_previous_occurrence(&local, inclusive)
        };
        found.ok().map(|t| t.with_timezone(&Utc))
    }

    /// The ticks `due ..= now` to fire, given that `due` is the tick the
    /// schedule was waiting for, and the tick to wait for next.
    ///
    /// Ticks no older than `misfire.grace` are merely late and always fire.
    /// Older ones were missed (the scheduler was down, or the schedule was
    /// disabled) and follow the policy: `skip` fires none of them, `run_once`
    /// fires the latest one, `catch_up` fires the latest `catch_up_limit`.
    pub fn plan(&self, due: DateTime<Utc>, now: DateTime<Utc>, misfire: &Misfire) -> TickPlan {
        if due > now {
            return TickPlan {
                fire: Vec::new(),
                skipped: 0,
                next_run_at: Some(due),
            };
        }
        let cutoff = now - misfire.grace;
        let mut fire = Vec::new();
        let mut skipped = 0;
        if due < cutoff {
            let keep = match misfire.policy {
                MisfirePolicy::Skip => 0,
                MisfirePolicy::RunOnce => 1,
                MisfirePolicy::CatchUp => misfire.catch_up_limit.max(1) as usize,
            };
            // Walk back from the cutoff: the latest missed ticks are the ones kept.
            let mut kept = Vec::with_capacity(keep.min(MAX_FIRE));
            let mut cursor = cutoff;
            while kept.len() < keep.min(MAX_FIRE) {
                match self.before(cursor) {
                    Some(tick) if tick >= due => {
                        kept.push(tick);
                        cursor = tick;
                    }
                    _ => break,
                }
            }
            skipped = self
                .count_between(due, cutoff)
                .saturating_sub(kept.len() as u64);
            kept.reverse();
            fire = kept;
        }
        let mut next = if due >= cutoff {
            Some(due)
        } else {
            self.at_or_after(cutoff)
        };
        while let Some(tick) = next {
            if tick > now || fire.len() >= MAX_FIRE {
                break;
            }
            fire.push(tick);
            next = self.next_after(tick);
        }
        TickPlan {
            fire,
            skipped,
            next_run_at: self.next_after(now),
        }
    }

    /// How many ticks fall in `from .. until` (`from` being a tick), counted
    /// up to [`MAX_COUNTED`].
    fn count_between(&self, from: DateTime<Utc>, until: DateTime<Utc>) -> u64 {
        let mut count = 0;
        let mut next = Some(from);
        while let Some(tick) = next {
            if tick >= until || count >= MAX_COUNTED {
                break;
            }
            count += 1;
            next = self.next_after(tick);
        }
        count
    }
}

/// What to do with ticks missed by more than the grace period.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MisfirePolicy {
    /// Fire none of the missed ticks.
    Skip,
    /// Fire one job for all the missed ticks (Celery beat's behaviour).
    #[default]
    RunOnce,
    /// Fire every missed tick, up to the schedule's catch-up limit (the latest ones).
    CatchUp,
}

impl MisfirePolicy {
    /// Every policy.
    pub const ALL: [MisfirePolicy; 3] = [
        MisfirePolicy::Skip,
        MisfirePolicy::RunOnce,
        MisfirePolicy::CatchUp,
    ];

    /// The name used in JSON and in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            MisfirePolicy::Skip => "skip",
            MisfirePolicy::RunOnce => "run_once",
            MisfirePolicy::CatchUp => "catch_up",
        }
    }
}

impl fmt::Display for MisfirePolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for MisfirePolicy {
    type Err = UnknownVariant;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        MisfirePolicy::ALL
            .into_iter()
            .find(|p| p.as_str() == s)
            .ok_or_else(|| UnknownVariant {
                kind: "misfire policy",
                value: s.to_owned(),
            })
    }
}

/// A schedule's misfire settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Misfire {
    pub policy: MisfirePolicy,
    /// How late a tick may fire and still count as on time.
    pub grace: TimeDelta,
    /// Under `catch_up`, the most missed ticks fired at once.
    pub catch_up_limit: u32,
}

/// The outcome of [`CronSchedule::plan`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TickPlan {
    /// Ticks to fire, oldest first. Each becomes one job.
    pub fire: Vec<DateTime<Utc>>,
    /// Missed ticks the policy dropped.
    pub skipped: u64,
    /// The tick to wait for next (`None`: the expression never fires again).
    pub next_run_at: Option<DateTime<Utc>>,
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn misfire(policy: MisfirePolicy, grace_seconds: i64, limit: u32) -> Misfire {
        Misfire {
            policy,
            grace: TimeDelta::seconds(grace_seconds),
            catch_up_limit: limit,
        }
    }

    /// The ticks after `from` up to `until`, as UTC RFC 3339 strings.
    fn ticks(schedule: &CronSchedule, from: &str, until: &str) -> Vec<String> {
        let until = utc(until);
        let mut out = Vec::new();
        let mut cursor = utc(from);
        while let Some(tick) = schedule.next_after(cursor) {
            if tick > until {
                break;
            }
            out.push(tick.to_rfc3339());
            cursor = tick;
        }
        out
    }

    #[test]
    fn parses_five_and_six_fields_and_aliases() {
        let five = CronSchedule::parse("*/15 * * * *", "UTC").unwrap();
        assert_eq!(
            five.next_after(utc("2026-01-01T00:00:00Z")),
            Some(utc("2026-01-01T00:15:00Z"))
        );
        let six = CronSchedule::parse("*/10 * * * * *", "UTC").unwrap();
        assert_eq!(
            six.next_after(utc("2026-01-01T00:00:00Z")),
            Some(utc("2026-01-01T00:00:10Z"))
        );
        let hourly = CronSchedule::parse("@hourly", "UTC").unwrap();
        assert_eq!(
            hourly.next_after(utc("2026-01-01T00:20:00Z")),
            Some(utc("2026-01-01T01:00:00Z"))
        );
    }

    #[test]
    fn refuses_bad_expressions_and_timezones_naming_the_field() {
        for bad in ["", "61 * * * *", "* * *", "banana", "*/0 * * * *"] {
            let error = CronSchedule::parse(bad, "UTC").unwrap_err();
            assert_eq!(error.field(), "cron", "{bad}: {error}");
        }
        let never = CronSchedule::parse("0 0 30 2 *", "UTC").unwrap_err();
        assert_eq!(never.field(), "cron");
        let error = CronSchedule::parse("* * * * *", "Mars/Olympus_Mons").unwrap_err();
        assert_eq!(error.field(), "timezone");
        assert!(error.to_string().contains("Mars/Olympus_Mons"));
    }

    #[test]
    fn ticks_follow_the_timezone() {
        let schedule = CronSchedule::parse("0 9 * * *", "America/New_York").unwrap();
        // 09:00 EST is 14:00 UTC in January.
        assert_eq!(
            schedule.next_after(utc("2026-01-10T00:00:00Z")),
            Some(utc("2026-01-10T14:00:00Z"))
        );
    }

    // Europe/Helsinki moves its clocks at 03:00 local time (01:00 UTC):
    // 2026-03-29 03:00 EET → 04:00 EEST, and 2026-10-25 04:00 EEST → 03:00 EET.

    #[test]
    fn dst_a_0230_schedule_in_helsinki_is_untouched_by_either_transition() {
        let schedule = CronSchedule::parse("30 2 * * *", "Europe/Helsinki").unwrap();
        // Spring: 02:30 EET (UTC+2) on the 28th and 29th, 02:30 EEST (UTC+3) on the 30th.
        assert_eq!(
            ticks(&schedule, "2026-03-28T00:00:00Z", "2026-03-30T12:00:00Z"),
            [
                "2026-03-28T00:30:00+00:00",
                "2026-03-29T00:30:00+00:00",
                "2026-03-29T23:30:00+00:00"
            ]
        );
        // Autumn: once a day, also on the day the clocks fall back.
        assert_eq!(
            ticks(&schedule, "2026-10-24T00:00:00Z", "2026-10-27T00:00:00Z"),
            ["2026-10-24T23:30:00+00:00", "2026-10-26T00:30:00+00:00"]
        );
    }

    #[test]
    fn dst_a_fixed_time_in_the_spring_gap_fires_once_right_after_it() {
        // 03:30 does not exist on 2026-03-29 in Helsinki.
        let schedule = CronSchedule::parse("30 3 * * *", "Europe/Helsinki").unwrap();
        assert_eq!(
            ticks(&schedule, "2026-03-28T00:00:00Z", "2026-03-31T00:00:00Z"),
            [
                "2026-03-28T01:30:00+00:00", // 03:30 EET
                "2026-03-29T01:00:00+00:00", // 04:00 EEST, the first time after the gap
                "2026-03-30T00:30:00+00:00", // 03:30 EEST
            ]
        );
    }

    #[test]
    fn dst_a_fixed_time_in_the_repeated_hour_fires_once() {
        // 03:30 happens twice on 2026-10-25 in Helsinki (EEST, then EET).
        let schedule = CronSchedule::parse("30 3 * * *", "Europe/Helsinki").unwrap();
        assert_eq!(
            ticks(&schedule, "2026-10-24T00:00:00Z", "2026-10-27T00:00:00Z"),
            [
                "2026-10-24T00:30:00+00:00", // 03:30 EEST
                "2026-10-25T00:30:00+00:00", // 03:30 EEST, first pass only
                "2026-10-26T01:30:00+00:00", // 03:30 EET
            ]
        );
    }

    #[test]
    fn dst_an_hourly_schedule_fires_on_both_passes_of_the_repeated_hour() {
        let schedule = CronSchedule::parse("30 * * * *", "Europe/Helsinki").unwrap();
        assert_eq!(
            ticks(&schedule, "2026-10-24T23:00:00Z", "2026-10-25T02:00:00Z"),
            [
                "2026-10-24T23:30:00+00:00", // 02:30 EEST
                "2026-10-25T00:30:00+00:00", // 03:30 EEST
                "2026-10-25T01:30:00+00:00", // 03:30 EET
            ]
        );
    }

    #[test]
    fn a_due_tick_inside_the_grace_period_fires_with_the_next_after_now() {
        let schedule = CronSchedule::parse("* * * * * *", "UTC").unwrap();
        let plan = schedule.plan(
            utc("2026-01-01T00:00:00Z"),
            utc("2026-01-01T00:00:02.500Z"),
            &misfire(MisfirePolicy::Skip, 5, 100),
        );
        assert_eq!(
            plan.fire,
            [
                utc("2026-01-01T00:00:00Z"),
                utc("2026-01-01T00:00:01Z"),
                utc("2026-01-01T00:00:02Z")
            ]
        );
        assert_eq!(plan.skipped, 0);
        assert_eq!(plan.next_run_at, Some(utc("2026-01-01T00:00:03Z")));
    }

    #[test]
    fn fractional_instants_are_never_rounded_onto_the_wrong_side() {
        let schedule = CronSchedule::parse("* * * * * *", "UTC").unwrap();
        let t = utc("2026-01-01T00:00:04.730Z");
        assert_eq!(schedule.next_after(t), Some(utc("2026-01-01T00:00:05Z")));
        assert_eq!(schedule.at_or_after(t), Some(utc("2026-01-01T00:00:05Z")));
        assert_eq!(schedule.before(t), Some(utc("2026-01-01T00:00:04Z")));
        let whole = utc("2026-01-01T00:00:04Z");
        assert_eq!(
            schedule.next_after(whole),
            Some(utc("2026-01-01T00:00:05Z"))
        );
        assert_eq!(schedule.at_or_after(whole), Some(whole));
        assert_eq!(schedule.before(whole), Some(utc("2026-01-01T00:00:03Z")));

        // Re-enabled 2.73 s after the due tick with one second of grace:
        // 04 is the latest missed tick, 05 is on time.
        let plan = schedule.plan(
            utc("2026-01-01T00:00:01Z"),
            utc("2026-01-01T00:00:05.730Z"),
            &misfire(MisfirePolicy::RunOnce, 1, 100),
        );
        assert_eq!(
            plan.fire,
            [utc("2026-01-01T00:00:04Z"), utc("2026-01-01T00:00:05Z")]
        );
        assert_eq!(plan.skipped, 3);
    }

    #[test]
    fn nothing_fires_before_the_due_tick() {
        let schedule = CronSchedule::parse("* * * * *", "UTC").unwrap();
        let due = utc("2026-01-01T00:01:00Z");
        let plan = schedule.plan(
            due,
            utc("2026-01-01T00:00:59.900Z"),
            &misfire(MisfirePolicy::CatchUp, 0, 10),
        );
        assert!(plan.fire.is_empty());
        assert_eq!(plan.next_run_at, Some(due));
    }

    #[test]
    fn misfire_policies_after_a_ten_minute_gap() {
        let schedule = CronSchedule::parse("* * * * *", "UTC").unwrap();
        let due = utc("2026-01-01T00:00:00Z");
        // Ticks 00:00 … 00:10 are due; with 30 s grace, 00:10 is on time and
        // the ten before it were missed.
        let now = utc("2026-01-01T00:10:20Z");
        let skip = schedule.plan(due, now, &misfire(MisfirePolicy::Skip, 30, 100));
        assert_eq!(skip.fire, [utc("2026-01-01T00:10:00Z")]);
        assert_eq!(skip.skipped, 10);

        let once = schedule.plan(due, now, &misfire(MisfirePolicy::RunOnce, 30, 100));
        assert_eq!(
            once.fire,
            [utc("2026-01-01T00:09:00Z"), utc("2026-01-01T00:10:00Z")]
        );
        assert_eq!(once.skipped, 9);

        let all = schedule.plan(due, now, &misfire(MisfirePolicy::CatchUp, 30, 100));
        assert_eq!(all.fire.len(), 11);
        assert_eq!(all.fire[0], due);
        assert_eq!(all.skipped, 0);

        let capped = schedule.plan(due, now, &misfire(MisfirePolicy::CatchUp, 30, 3));
        assert_eq!(
            capped.fire,
            [
                utc("2026-01-01T00:07:00Z"),
                utc("2026-01-01T00:08:00Z"),
                utc("2026-01-01T00:09:00Z"),
                utc("2026-01-01T00:10:00Z")
            ]
        );
        assert_eq!(capped.skipped, 7);
        for plan in [skip, once, all, capped] {
            assert_eq!(plan.next_run_at, Some(utc("2026-01-01T00:11:00Z")));
        }
    }

    #[test]
    fn a_long_outage_of_a_per_second_schedule_is_planned_quickly() {
        let schedule = CronSchedule::parse("* * * * * *", "UTC").unwrap();
        let due = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
        let now = due + TimeDelta::days(30);
        let plan = schedule.plan(due, now, &misfire(MisfirePolicy::RunOnce, 1, 100));
        // The latest missed tick, then the two inside the one-second grace.
        assert_eq!(
            plan.fire,
            [
                now - TimeDelta::seconds(2),
                now - TimeDelta::seconds(1),
                now
            ]
        );
        assert_eq!(plan.skipped, MAX_COUNTED - 1);
    }

    #[test]
    fn policies_round_trip_through_their_names() {
        for policy in MisfirePolicy::ALL {
            assert_eq!(policy.as_str().parse::<MisfirePolicy>().unwrap(), policy);
        }
        assert!("sometimes".parse::<MisfirePolicy>().is_err());
    }
}
