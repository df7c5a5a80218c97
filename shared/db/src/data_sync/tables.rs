//! Names a `data_sync` job may write to: validated identifiers, quoted for
//! SQL, and never one of Roundhouse's own tables.

use std::fmt;

/// Every table Roundhouse's migrations create. A `data_sync` job never
/// writes to them: it would let a payload rewrite job state, credits or
/// schedules. `shared/db/tests/db/data_sync.rs` checks that this list covers
/// every table of a freshly migrated database, so a migration that adds a
/// table without adding it here fails the tests.
pub const ROUNDHOUSE_TABLES: &[&str] = &[
    "_sqlx_migrations",
    "queues",
    "jobs",
    "job_events",
    "schedules",
    "agents",
    "user_credits",
    "credit_ledger",
    "agent_runs",
    "agent_run_chunks",
    "rag_documents",
    "rag_chunks",
    "rag_segment_analyses",
    "data_sync_checkpoints",
    "notification_deliveries",
    "job_types",
    "job_callback_tokens",
    "alert_state",
    "alerts",
    "alert_budget",
    "dashboard_sessions",
    "audit_log",
];

/// Whether `name` (any case) is one of [`ROUNDHOUSE_TABLES`].
pub fn is_roundhouse_table(name: &str) -> bool {
    ROUNDHOUSE_TABLES
        .iter()
        .any(|table| table.eq_ignore_ascii_case(name))
}

/// Whether a schema belongs to PostgreSQL itself.
pub(crate) fn is_system_schema(schema: &str) -> bool {
    let schema = schema.to_ascii_lowercase();
    schema.starts_with("pg_") || schema == "information_schema"
}

const MAX_IDENT_BYTES: usize = 63;

/// A table or column name, taken literally (case-sensitive, as in the
/// catalog and in Supabase's table editor) and always double-quoted in SQL.
/// Letters, digits, `_`, `$` and `-`, at most 63 bytes.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Ident(String);

impl Ident {
    /// Checks a name.
    pub fn parse(name: &str) -> Result<Self, String> {
        if name.is_empty() {
            return Err("must not be empty".into());
        }
        if name.len() > MAX_IDENT_BYTES {
            return Err(format!("longer than {MAX_IDENT_BYTES} bytes"));
        }
        if !name
            .chars()
            .all(|c| c.is_alphanumeric() || matches!(c, '_' | '$' | '-'))
        {
            return Err(format!(
                "`{name}` is not a name (letters, digits, '_', '$' or '-')"
            ));
        }
        Ok(Self(name.to_owned()))
    }

    /// The name as given.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The name as a quoted SQL identifier.
    pub fn quoted(&self) -> String {
        quote(&self.0)
    }
}

impl fmt::Display for Ident {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl PartialEq<str> for Ident {
    fn eq(&self, other: &str) -> bool {
        self.0 == other
    }
}

/// A table name, optionally schema-qualified (`customers`, `crm.customers`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableName {
    pub schema: Option<Ident>,
    pub name: Ident,
}

impl TableName {
    /// Parses `table` or `schema.table`.
    pub fn parse(name: &str) -> Result<Self, String> {
        let parts: Vec<&str> = name.split('.').collect();
        match parts.as_slice() {
            [table] => Ok(Self {
                schema: None,
                name: Ident::parse(table)?,
            }),
            [schema, table] => Ok(Self {
                schema: Some(Ident::parse(schema)?),
                name: Ident::parse(table)?,
            }),
            _ => Err(format!("`{name}` is not `table` or `schema.table`")),
        }
    }

    /// Why a job may not write here, if it may not: a Roundhouse table, or
    /// a PostgreSQL catalog.
    pub fn refusal(&self) -> Option<String> {
        if let Some(schema) = &self.schema
            && is_system_schema(schema.as_str())
        {
            return Some(format!(
                "`{self}` is a PostgreSQL system table; data_sync does not write there"
            ));
        }
        let default_schema = self
            .schema
            .as_ref()
            .is_none_or(|schema| schema.as_str() == "public");
        if default_schema && is_roundhouse_table(self.name.as_str()) {
            return Some(format!(
                "`{self}` is one of Roundhouse's own tables; data_sync never writes to them"
            ));
        }
        None
    }

    /// The name as quoted SQL (`"crm"."customers"`).
    pub fn quoted(&self) -> String {
        match &self.schema {
            Some(schema) => format!("{}.{}", schema.quoted(), self.name.quoted()),
            None => self.name.quoted(),
        }
    }
}

impl fmt::Display for TableName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.schema {
            Some(schema) => write!(f, "{schema}.{}", self.name),
            None => write!(f, "{}", self.name),
        }
    }
}

/// `name` as a double-quoted SQL identifier.
pub(crate) fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_quoted_literally_and_checked() {
        let table = TableName::parse("crm.Customers").unwrap();
        assert_eq!(table.quoted(), r#""crm"."Customers""#);
        assert_eq!(table.to_string(), "crm.Customers");
        for bad in [
            "",
            "a b",
            "x;drop",
            "a\"b",
            "t.",
            ".t",
            "a.b.c",
            &"x".repeat(64),
        ] {
            assert!(TableName::parse(bad).is_err(), "{bad:?}");
        }
        assert_eq!(quote(r#"we"ird"#), r#""we""ird""#);
    }

    #[test]
    fn roundhouse_and_system_tables_are_refused() {
        for name in ["jobs", "public.jobs", "Job_Events", "_sqlx_migrations"] {
            assert!(
                TableName::parse(name).unwrap().refusal().is_some(),
                "{name}"
            );
        }
        for name in [
            "pg_catalog.pg_authid",
            "information_schema.tables",
            "pg_toast.x",
        ] {
            assert!(
                TableName::parse(name).unwrap().refusal().is_some(),
                "{name}"
            );
        }
        for name in ["customers", "crm.jobs", "public.customers"] {
            assert!(
                TableName::parse(name).unwrap().refusal().is_none(),
                "{name}"
            );
        }
    }
}
