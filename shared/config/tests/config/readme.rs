//! Every environment variable the services read is in README's
//! configuration table, and the table names no variable they do not read.

use std::collections::BTreeSet;

use roundhouse_config::ENV_VARS;

/// Read by `Settings::load` itself, before the table's variables: the path
/// of the settings file.
const READ_DIRECTLY: &[&str] = &["ROUNDHOUSE_CONFIG"];

fn readme() -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md");
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {path}: {e}"))
}

/// The variable names in the first column of the first table under
/// `## Configuration`. A row may name several (`` `RUST_LOG` / `LOG_LEVEL` ``,
/// `` `OPENAI_API_KEY`, `OPENAI_BASE_URL` ``, `` `X` (alias `Y`) ``): every
/// backticked upper-case name in the cell counts.
fn table_variables(readme: &str) -> BTreeSet<String> {
    let section = readme
        .split("\n## Configuration\n")
        .nth(1)
        .expect("README has a `## Configuration` section");
    let section = section.split("\n## ").next().unwrap_or(section);
    let rows: Vec<&str> = section
        .lines()
        .skip_while(|line| !line.starts_with('|'))
        .take_while(|line| line.starts_with('|'))
        .skip(2) // the header and the |---| line
        .collect();
    assert!(!rows.is_empty(), "no table under `## Configuration`");
    let mut names = BTreeSet::new();
    for row in rows {
        let first = first_cell(row);
        let found = backticked(first)
            .filter(|name| is_variable_name(name))
            .map(str::to_owned)
            .collect::<Vec<_>>();
        assert!(
            !found.is_empty(),
            "a configuration row names no variable: {row}"
        );
        names.extend(found);
    }
    names
}

/// The first cell of a table row (a `\|` inside it is not a separator).
fn first_cell(row: &str) -> &str {
    let row = row.trim_start_matches('|');
    let bytes = row.as_bytes();
    let end = (0..bytes.len())
        .find(|&i| bytes[i] == b'|' && (i == 0 || bytes[i - 1] != b'\\'))
        .unwrap_or(row.len());
    &row[..end]
}

fn backticked(text: &str) -> impl Iterator<Item = &str> {
    text.split('`').skip(1).step_by(2)
}

fn is_variable_name(name: &str) -> bool {
    name.starts_with(|c: char| c.is_ascii_uppercase())
        && name
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
}

#[test]
fn every_variable_the_services_read_is_in_the_readme_table_and_no_other() {
    let documented = table_variables(&readme());
    let read: BTreeSet<String> = ENV_VARS
        .iter()
        .map(|(variable, _)| *variable)
        .chain(READ_DIRECTLY.iter().copied())
        .map(str::to_owned)
        .collect();
    let undocumented: Vec<&String> = read.difference(&documented).collect();
    let unread: Vec<&String> = documented.difference(&read).collect();
    assert!(
        undocumented.is_empty() && unread.is_empty(),
        "README's configuration table is out of step with roundhouse_config::ENV_VARS:\n\
         read but not in the table: {undocumented:?}\n\
         in the table but never read: {unread:?}"
    );
}

#[test]
fn the_table_parser_reads_every_form_of_row() {
    let readme = "# X\n\n## Configuration\n\nIntro.\n\n\
        | variable | default | meaning |\n\
        |---|---|---|\n\
        | `A_B` | 1 | one |\n\
        | `RUST_LOG` / `LOG_LEVEL` | `info` | two |\n\
        | `RABBITMQ_URL` (alias `AMQP_URL`) | local | alias |\n\
        | `OPENAI_API_KEY`, `OPENAI_BASE_URL` | —, `https://x` | pair; `NOT_THIS` |\n\
        | `LLM_PROVIDERS` | — | `a=b\\|c` |\n\
        \n\
        | not | the | table |\n\
        |---|---|---|\n\
        | `LATER` | | |\n\
        \n## Deploying\n";
    let names: Vec<String> = table_variables(readme).into_iter().collect();
    assert_eq!(
        names,
        [
            "AMQP_URL",
            "A_B",
            "LLM_PROVIDERS",
            "LOG_LEVEL",
            "OPENAI_API_KEY",
            "OPENAI_BASE_URL",
            "RABBITMQ_URL",
            "RUST_LOG"
        ]
    );
}
