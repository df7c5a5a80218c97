use roundhouse_db::{Db, PoolSettings};

use crate::helpers::cli;

fn admin_url() -> String {
    std::env::var("TEST_DATABASE_ADMIN_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

#[tokio::test]
async fn migrate_prepares_a_fresh_database() {
    let name = format!(
        "rh_test_cli_{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    );
    roundhouse_db::create_database(&admin_url(), &name)
        .await
        .expect("create a database");
    let admin = admin_url();
    let url = format!("{}/{name}", &admin[..admin.rfind('/').unwrap()]);
    let env = [
        ("ROUNDHOUSE_CONFIG", "/nonexistent/roundhouse.toml"),
        ("DATABASE_URL", url.as_str()),
    ];

    let first = cli(&env, &["migrate"]).await;
    let again = cli(&env, &["migrate", "--json"]).await;

    let db = Db::connect_lazy(&url, &PoolSettings::default()).unwrap();
    let tables_exist = db.get_job(uuid::Uuid::now_v7(), None).await;
    db.close().await;
    let _ = roundhouse_db::drop_database(&admin_url(), &name).await;
    assert_eq!(first.ok(), "migrations applied");
    assert_eq!(again.json()["migrated"], true);
    assert!(tables_exist.is_ok(), "{tables_exist:?}");
}

#[tokio::test]
async fn migrate_without_a_valid_database_url_exits_2() {
    let env = [
        ("ROUNDHOUSE_CONFIG", "/nonexistent/roundhouse.toml"),
        ("DATABASE_URL", "mysql://nope"),
    ];
    let refused = cli(&env, &["migrate"]).await;
    assert_eq!(refused.code, 2, "{refused:?}");
    assert!(refused.stderr.contains("DATABASE_URL"), "{refused:?}");
}
