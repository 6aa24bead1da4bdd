//! `create_sql` against the scripts Kamailio 5.6.3 installs, for every group and dialect.
//!
//! The scripts come from the Debian packages, which the project's test setup installs; a
//! missing script fails the test rather than skipping it, so CI cannot pass without comparing.

use std::path::Path;

use db_schema::{Dialect, all_groups, create_sql};

const DIALECTS: [(Dialect, &str, &str); 3] = [
    (Dialect::Sqlite, "db_sqlite", "kamailio-sqlite-modules"),
    (Dialect::Postgres, "postgres", "kamailio-postgres-modules"),
    (Dialect::Mysql, "mysql", "kamailio-mysql-modules"),
];

/// Trailing whitespace of each line and trailing blank lines are dropped. The rendering
/// currently matches the installed files byte for byte, but that is packaging layout, not
/// schema, and a repackaged script may differ in it. Nothing else is normalized.
fn normalize(script: &str) -> String {
    let lines: Vec<&str> = script.lines().map(str::trim_end).collect();
    let mut out = lines.join("\n");
    out.truncate(out.trim_end().len());
    out
}

#[test]
fn create_sql_is_kamailios_script() {
    let mut checked = 0;
    for group in all_groups() {
        for (dialect, dir, package) in DIALECTS {
            let path = Path::new("/usr/share/kamailio").join(dir).join(format!("{}-create.sql", group.name));
            let expected = std::fs::read_to_string(&path).unwrap_or_else(|e| {
                panic!(
                    "cannot read {}: {e}; it is installed by the Debian package {package} \
                     (Kamailio 5.6.3): apt-get install {package}",
                    path.display()
                )
            });
            let rendered = create_sql(group.tables, dialect);
            let (expected, rendered) = (normalize(&expected), normalize(&rendered));
            if expected != rendered {
                let line = expected
                    .lines()
                    .zip(rendered.lines())
                    .position(|(e, r)| e != r)
                    .unwrap_or_else(|| expected.lines().count().min(rendered.lines().count()));
                panic!(
                    "{}: create_sql({:?}, {dialect:?}) differs from line {}:\n\
                     expected: {:?}\n\
                     rendered: {:?}",
                    path.display(),
                    group.name,
                    line + 1,
                    expected.lines().nth(line),
                    rendered.lines().nth(line),
                );
            }
            checked += 1;
        }
    }
    assert_eq!(checked, 15);
}
