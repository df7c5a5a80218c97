//! Checks of a service's OpenAPI document with the pinned Python tools of
//! `scripts/test-tools-requirements.txt` (installed into
//! `target/test-tools/venv` by `scripts/install-test-tools.sh`, which
//! `make test` runs). Without the tools these checks fail, saying so; they
//! never skip.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Instant;

use roundhouse_http::docs::Route;
use serde_json::Value;

/// The methods an OpenAPI path item may hold.
const METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

/// A pinned test tool (`ROUNDHOUSE_TEST_TOOLS` overrides the venv).
pub fn test_tool(name: &str) -> PathBuf {
    let bin = std::env::var_os("ROUNDHOUSE_TEST_TOOLS")
        .map(|venv| PathBuf::from(venv).join("bin"))
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/test-tools/venv/bin")
        });
    let path = bin.join(name);
    assert!(
        path.is_file(),
        "{} is missing: run `make test` or `scripts/install-test-tools.sh`, which install the \
         pinned Python test tools into target/test-tools/venv",
        path.display()
    );
    path
}

/// Every operation of `document`, as a [`Route`].
pub fn documented_routes(document: &Value) -> BTreeSet<Route> {
    let paths = document["paths"].as_object().expect("paths");
    paths
        .iter()
        .flat_map(|(path, item)| {
            METHODS
                .iter()
                .filter(|method| item.get(**method).is_some())
                .map(|method| Route {
                    method: method.to_uppercase(),
                    path: path.clone(),
                })
        })
        .collect()
}

/// Asserts that a router serves exactly what its document documents,
/// naming every difference.
pub fn assert_same_routes(served: &BTreeSet<Route>, documented: &BTreeSet<Route>) {
    let undocumented: Vec<String> = served
        .difference(documented)
        .map(Route::to_string)
        .collect();
    let unserved: Vec<String> = documented
        .difference(served)
        .map(Route::to_string)
        .collect();
    assert!(
        undocumented.is_empty() && unserved.is_empty(),
        "served but not documented: {undocumented:?}\ndocumented but not served: {unserved:?}"
    );
}

/// Asserts that `document` is OpenAPI 3.1 and that openapi-spec-validator
/// accepts it. `scratch` is a directory for the temporary file.
pub async fn assert_valid_openapi(document: &Value, scratch: &Path) {
    assert!(
        document["openapi"]
            .as_str()
            .is_some_and(|v| v.starts_with("3.1")),
        "{}",
        document["openapi"]
    );
    let file = scratch.join(format!("openapi-{}.json", uuid::Uuid::new_v4().simple()));
    std::fs::write(&file, document.to_string()).expect("write the document");
    let output = tokio::process::Command::new(test_tool("openapi-spec-validator"))
        .arg(&file)
        .output()
        .await
        .expect("run openapi-spec-validator");
    let _ = std::fs::remove_file(&file);
    assert!(
        output.status.success(),
        "openapi-spec-validator refused the document:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Runs schemathesis against the service at `base_url` from its document
/// (`{base_url}/api/openapi.json`), sending `headers`, and asserts that no
/// answer is a server error. Bounded (25 examples per operation and phase,
/// a fixed seed for reproducible runs): well under two minutes. Its example
/// database (`.schemathesis/`) goes to `scratch`, not the source tree.
pub async fn assert_fuzzing_finds_no_server_error(
    base_url: &str,
    headers: &[String],
    scratch: &Path,
) {
    let started = Instant::now();
    let mut command = tokio::process::Command::new(test_tool("schemathesis"));
    command
        .current_dir(scratch)
        .arg("run")
        .arg(format!("{base_url}/api/openapi.json"))
        .args(["--url", base_url])
        .args(["--checks", "not_a_server_error"])
        .args(["--phases", "examples,coverage,fuzzing"])
        .args(["--max-examples", "25"])
        .args(["--seed", "1"])
        .args(["--workers", "2"])
        // Event streams of the jobs (runs) it created stay open: end them soon.
        .args(["--request-timeout", "2"])
        .args(["--suppress-health-check", "all"])
        .args(["--warnings", "off"])
        .env("NO_COLOR", "1")
        .env("SCHEMATHESIS_HOOKS", "");
    for header in headers {
        command.args(["-H", header]);
    }
    let output = command.output().await.expect("run schemathesis");
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        output.status.success(),
        "schemathesis found problems ({:?}):\n{report}",
        output.status
    );
    eprintln!(
        "schemathesis passed in {:.0?}:\n{report}",
        started.elapsed()
    );
}
