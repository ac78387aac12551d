//! A FlughafenDB import, as a user has one: FlughafenDB's tables with the
//! column names, types, keys and foreign keys its dump defines (a few rows
//! each), no workshop tables and no seed record. `check-env` says per
//! exercise what can run, `seed` adds only the workshop's own tables and
//! leaves every imported table exactly as it was, also with `--reset`.

mod support;

use serde_json::Value;
use sqlx::Connection;
use support::{cli_against, run_json, valkey_url, TestDatabase, TestPrefix, BOTH};
use workshop_cli::config::DatabaseKind;

/// FlughafenDB's own tables, as its MySQL dump creates them (the English
/// schema, flughafendb_schema_en.sql), plus airplane_type, which the workshop
/// never reads: it must survive too.
const MYSQL_IMPORT: &str = r#"
CREATE TABLE `airport` (
  `airport_id` smallint(6) NOT NULL AUTO_INCREMENT,
  `iata` char(3) DEFAULT NULL,
  `icao` char(4) NOT NULL,
  `name` varchar(50) NOT NULL,
  PRIMARY KEY (`airport_id`),
  UNIQUE KEY `icao_unq` (`icao`),
  KEY `name_idx` (`name`),
  KEY `iata_idx` (`iata`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;
CREATE TABLE `airline` (
  `airline_id` smallint(6) NOT NULL AUTO_INCREMENT,
  `iata` char(2) NOT NULL,
  `airlinename` varchar(30) DEFAULT NULL,
  `base_airport` smallint(6) NOT NULL,
  PRIMARY KEY (`airline_id`),
  UNIQUE KEY `iata_unq` (`iata`),
  KEY `heimat_idx` (`base_airport`),
  CONSTRAINT `fluglinie_ibfk_1` FOREIGN KEY (`base_airport`) REFERENCES `airport` (`airport_id`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;
CREATE TABLE `airplane_type` (
  `type_id` int(11) NOT NULL AUTO_INCREMENT,
  `identifier` varchar(50) DEFAULT NULL,
  `description` text,
  PRIMARY KEY (`type_id`),
  FULLTEXT KEY `bezeichnung_full` (`identifier`,`description`)
) ENGINE=MyISAM DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;
CREATE TABLE `airplane` (
  `airplane_id` int(11) NOT NULL AUTO_INCREMENT,
  `capacity` mediumint(8) unsigned NOT NULL,
  `type_id` int(11) NOT NULL,
  `airline_id` int(11) NOT NULL,
  PRIMARY KEY (`airplane_id`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;
CREATE TABLE `flight` (
  `flight_id` int(11) NOT NULL AUTO_INCREMENT,
  `flightno` char(8) NOT NULL,
  `from` smallint(6) NOT NULL,
  `to` smallint(6) NOT NULL,
  `departure` datetime NOT NULL,
  `arrival` datetime NOT NULL,
  `airline_id` smallint(6) NOT NULL,
  `airplane_id` int(11) NOT NULL,
  PRIMARY KEY (`flight_id`),
  KEY `von_idx` (`from`),
  KEY `nach_idx` (`to`),
  KEY `abflug_idx` (`departure`),
  KEY `ankunft_idx` (`arrival`),
  KEY `fluglinie_idx` (`airline_id`),
  KEY `flugzeug_idx` (`airplane_id`),
  CONSTRAINT `flug_ibfk_1` FOREIGN KEY (`from`) REFERENCES `airport` (`airport_id`),
  CONSTRAINT `flug_ibfk_2` FOREIGN KEY (`to`) REFERENCES `airport` (`airport_id`),
  CONSTRAINT `flug_ibfk_3` FOREIGN KEY (`airline_id`) REFERENCES `airline` (`airline_id`),
  CONSTRAINT `flug_ibfk_4` FOREIGN KEY (`airplane_id`) REFERENCES `airplane` (`airplane_id`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;
CREATE TABLE `passenger` (
  `passenger_id` int(11) NOT NULL AUTO_INCREMENT,
  `passportno` char(9) NOT NULL,
  `firstname` varchar(100) NOT NULL,
  `lastname` varchar(100) NOT NULL,
  PRIMARY KEY (`passenger_id`),
  UNIQUE KEY `pass_unq` (`passportno`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;
CREATE TABLE `passengerdetails` (
  `passenger_id` int(11) NOT NULL,
  `birthdate` date NOT NULL,
  `sex` char(1) DEFAULT NULL,
  `street` varchar(100) NOT NULL,
  `city` varchar(100) NOT NULL,
  `zip` smallint(6) NOT NULL,
  `country` varchar(100) NOT NULL,
  `emailaddress` varchar(120) DEFAULT NULL,
  `telephoneno` varchar(30) DEFAULT NULL,
  PRIMARY KEY (`passenger_id`),
  CONSTRAINT `passagierdetails_ibfk_1` FOREIGN KEY (`passenger_id`) REFERENCES `passenger` (`passenger_id`) ON DELETE CASCADE
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;
CREATE TABLE `booking` (
  `booking_id` int(11) NOT NULL AUTO_INCREMENT,
  `flight_id` int(11) NOT NULL,
  `seat` char(4) DEFAULT NULL,
  `passenger_id` int(11) NOT NULL,
  `price` decimal(10,2) NOT NULL,
  PRIMARY KEY (`booking_id`),
  UNIQUE KEY `sitzplan_unq` (`flight_id`,`seat`),
  KEY `flug_idx` (`flight_id`),
  KEY `passagier_idx` (`passenger_id`),
  CONSTRAINT `buchung_ibfk_1` FOREIGN KEY (`flight_id`) REFERENCES `flight` (`flight_id`),
  CONSTRAINT `buchung_ibfk_2` FOREIGN KEY (`passenger_id`) REFERENCES `passenger` (`passenger_id`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;
"#;

/// The same tables as a PostgreSQL conversion of the dump has them (what
/// pgloader makes of the MySQL types: smallint, integer, char(n), varchar(n),
/// timestamp, numeric; AUTO_INCREMENT becomes serial, its sequence moved past
/// the loaded ids, see [`POSTGRES_SEQUENCES`]), with the same keys and
/// foreign keys.
const POSTGRES_IMPORT: &str = r#"
CREATE TABLE airport (
  airport_id smallserial NOT NULL PRIMARY KEY,
  iata char(3),
  icao char(4) NOT NULL CONSTRAINT icao_unq UNIQUE,
  name varchar(50) NOT NULL
);
CREATE INDEX name_idx ON airport (name);
CREATE INDEX iata_idx ON airport (iata);
CREATE TABLE airline (
  airline_id smallserial NOT NULL PRIMARY KEY,
  iata char(2) NOT NULL CONSTRAINT iata_unq UNIQUE,
  airlinename varchar(30),
  base_airport smallint NOT NULL CONSTRAINT fluglinie_ibfk_1 REFERENCES airport (airport_id)
);
CREATE INDEX heimat_idx ON airline (base_airport);
CREATE TABLE airplane_type (
  type_id serial NOT NULL PRIMARY KEY,
  identifier varchar(50),
  description text
);
CREATE TABLE airplane (
  airplane_id serial NOT NULL PRIMARY KEY,
  capacity integer NOT NULL CHECK (capacity >= 0),
  type_id integer NOT NULL,
  airline_id integer NOT NULL
);
CREATE TABLE flight (
  flight_id serial NOT NULL PRIMARY KEY,
  flightno char(8) NOT NULL,
  "from" smallint NOT NULL CONSTRAINT flug_ibfk_1 REFERENCES airport (airport_id),
  "to" smallint NOT NULL CONSTRAINT flug_ibfk_2 REFERENCES airport (airport_id),
  departure timestamp NOT NULL,
  arrival timestamp NOT NULL,
  airline_id smallint NOT NULL CONSTRAINT flug_ibfk_3 REFERENCES airline (airline_id),
  airplane_id integer NOT NULL CONSTRAINT flug_ibfk_4 REFERENCES airplane (airplane_id)
);
CREATE INDEX von_idx ON flight ("from");
CREATE INDEX nach_idx ON flight ("to");
CREATE INDEX abflug_idx ON flight (departure);
CREATE TABLE passenger (
  passenger_id serial NOT NULL PRIMARY KEY,
  passportno char(9) NOT NULL CONSTRAINT pass_unq UNIQUE,
  firstname varchar(100) NOT NULL,
  lastname varchar(100) NOT NULL
);
CREATE TABLE passengerdetails (
  passenger_id integer NOT NULL PRIMARY KEY
    CONSTRAINT passagierdetails_ibfk_1 REFERENCES passenger (passenger_id) ON DELETE CASCADE,
  birthdate date NOT NULL,
  sex char(1),
  street varchar(100) NOT NULL,
  city varchar(100) NOT NULL,
  zip smallint NOT NULL,
  country varchar(100) NOT NULL,
  emailaddress varchar(120),
  telephoneno varchar(30)
);
CREATE TABLE booking (
  booking_id serial NOT NULL PRIMARY KEY,
  flight_id integer NOT NULL CONSTRAINT buchung_ibfk_1 REFERENCES flight (flight_id),
  seat char(4),
  passenger_id integer NOT NULL CONSTRAINT buchung_ibfk_2 REFERENCES passenger (passenger_id),
  price numeric(10,2) NOT NULL,
  CONSTRAINT sitzplan_unq UNIQUE (flight_id, seat)
);
CREATE INDEX passagier_idx ON booking (passenger_id);
"#;

/// A few rows per table, in SQL both engines take; airport 3797 is
/// FARQUHAR (no IATA code), as in FlughafenDB.
const ROWS: &str = r#"
INSERT INTO airport VALUES (1, 'LCG', 'LECO', 'A CORUNA'), (2, 'VIE', 'LOWW', 'SCHWECHAT'), (3797, NULL, 'FSFA', 'FARQUHAR');
INSERT INTO airline VALUES (1, 'AR', 'Argentina Airlines', 1), (2, 'OS', 'Austrian Airlines', 2);
INSERT INTO airplane_type VALUES (1, 'A320', 'Airbus A320, narrow body');
INSERT INTO airplane VALUES (1, 180, 1, 1), (2, 220, 1, 2);
INSERT INTO flight VALUES
  (1, 'AR1001', 1, 2, '2015-06-01 10:00:00', '2015-06-01 12:30:00', 1, 1),
  (2, 'OS2002', 2, 3797, '2015-06-02 08:00:00', '2015-06-02 14:05:00', 2, 2);
INSERT INTO passenger VALUES (1, 'P103014', 'Buzz', 'Aldrin'), (2, 'P103015', 'Bobby "Blue"', 'Bland'), (3, 'P103016', 'Jürgen', 'Straße');
INSERT INTO passengerdetails VALUES
  (1, '1930-01-20', 'm', 'Sonnenweg 1', 'Montclair', 7042, 'USA', 'buzz@example.com', '+1 555 0100'),
  (2, '1930-01-27', 'm', 'Beale Street 2', 'Memphis', 3810, 'USA', NULL, NULL),
  (3, '1970-05-05', NULL, 'Hauptstraße 3', 'Graz', 8010, 'Austria', 'j@example.at', '+43 316 0');
INSERT INTO booking VALUES (1, 1, '1A', 1, 150.00), (2, 1, '1B', 2, 99.99), (3, 2, NULL, 3, 1234.50);
"#;

/// What a converter does after loading rows with their ids: each serial's
/// sequence continues after the largest id.
const POSTGRES_SEQUENCES: &str = r#"
SELECT setval(pg_get_serial_sequence('airport', 'airport_id'), MAX(airport_id)) FROM airport;
SELECT setval(pg_get_serial_sequence('airline', 'airline_id'), MAX(airline_id)) FROM airline;
SELECT setval(pg_get_serial_sequence('airplane_type', 'type_id'), MAX(type_id)) FROM airplane_type;
SELECT setval(pg_get_serial_sequence('airplane', 'airplane_id'), MAX(airplane_id)) FROM airplane;
SELECT setval(pg_get_serial_sequence('flight', 'flight_id'), MAX(flight_id)) FROM flight;
SELECT setval(pg_get_serial_sequence('passenger', 'passenger_id'), MAX(passenger_id)) FROM passenger;
SELECT setval(pg_get_serial_sequence('booking', 'booking_id'), MAX(booking_id)) FROM booking;
"#;

/// Every table the import brings, the ones the workshop never reads too.
const IMPORTED: [&str; 8] = [
    "airport",
    "airline",
    "airplane_type",
    "airplane",
    "flight",
    "passenger",
    "passengerdetails",
    "booking",
];

async fn execute(db: &TestDatabase, sql: &str) {
    match db.kind {
        DatabaseKind::MySql => {
            let mut conn = sqlx::MySqlConnection::connect(&db.url()).await.expect("connect");
            sqlx::raw_sql(sql).execute(&mut conn).await.expect(sql);
            conn.close().await.ok();
        }
        DatabaseKind::Postgres => {
            let mut conn = sqlx::PgConnection::connect(&db.url()).await.expect("connect");
            sqlx::raw_sql(sql).execute(&mut conn).await.expect(sql);
            conn.close().await.ok();
        }
    }
}

/// Rows of a query, every value as text (NULL as None), for comparing.
async fn text_rows(db: &TestDatabase, sql: &str) -> Vec<Vec<Option<String>>> {
    use sqlx::Row;
    let sql = sql.to_string();
    match db.kind {
        DatabaseKind::MySql => {
            let mut conn = sqlx::MySqlConnection::connect(&db.url()).await.expect("connect");
            let rows = sqlx::raw_sql(&sql).fetch_all(&mut conn).await.expect(&sql);
            conn.close().await.ok();
            rows.iter()
                .map(|row| {
                    (0..row.len())
                        .map(|i| row.try_get::<Option<String>, _>(i).expect("a text column"))
                        .collect()
                })
                .collect()
        }
        DatabaseKind::Postgres => {
            let mut conn = sqlx::PgConnection::connect(&db.url()).await.expect("connect");
            let rows = sqlx::raw_sql(&sql).fetch_all(&mut conn).await.expect(&sql);
            conn.close().await.ok();
            rows.iter()
                .map(|row| {
                    (0..row.len())
                        .map(|i| row.try_get::<Option<String>, _>(i).expect("a text column"))
                        .collect()
                })
                .collect()
        }
    }
}

/// Everything about an imported table that `seed` must not change: its
/// definition (columns, keys, foreign keys, AUTO_INCREMENT) and every row.
async fn fingerprint(db: &TestDatabase) -> Vec<(String, Vec<Vec<Option<String>>>)> {
    let mut out = Vec::new();
    for table in IMPORTED {
        let definition = match db.kind {
            DatabaseKind::MySql => format!("SHOW CREATE TABLE `{table}`"),
            DatabaseKind::Postgres => format!(
                    "SELECT column_name || ' ' || data_type || ' ' || COALESCE(character_maximum_length::text, '') || ' ' || is_nullable || ' ' || COALESCE(column_default, '') \
                     FROM information_schema.columns WHERE table_schema = current_schema() AND table_name = '{table}' \
                     UNION ALL SELECT indexdef FROM pg_indexes WHERE schemaname = current_schema() AND tablename = '{table}' \
                     UNION ALL SELECT conname || ' ' || pg_get_constraintdef(oid) FROM pg_constraint WHERE conrelid = '{table}'::regclass \
                     ORDER BY 1"
            ),
        };
        out.push((format!("{table} definition"), text_rows(db, &definition).await));
        out.push((
            format!("{table} rows"),
            text_rows(db, &table_rows_sql(db.kind, table)).await,
        ));
    }
    out
}

/// Every row of `table` as one text per row, in a stable order.
fn table_rows_sql(kind: DatabaseKind, table: &str) -> String {
    match kind {
        DatabaseKind::MySql => {
            let columns = match table {
                "airport" => "airport_id, iata, icao, name",
                "airline" => "airline_id, iata, airlinename, base_airport",
                "airplane_type" => "type_id, identifier, description",
                "airplane" => "airplane_id, capacity, type_id, airline_id",
                "flight" => "flight_id, flightno, `from`, `to`, departure, arrival, airline_id, airplane_id",
                "passenger" => "passenger_id, passportno, firstname, lastname",
                "passengerdetails" => {
                    "passenger_id, birthdate, sex, street, city, zip, country, emailaddress, telephoneno"
                }
                "booking" => "booking_id, flight_id, seat, passenger_id, price",
                other => panic!("no columns for {other}"),
            };
            let first = columns.split(',').next().unwrap_or_default();
            format!(
                "SELECT CAST(CONCAT_WS('|', {}) AS CHAR) FROM `{table}` ORDER BY {first}",
                columns
                    .split(", ")
                    .map(|c| format!("COALESCE({c}, '∅')"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        }
        DatabaseKind::Postgres => format!("SELECT t::text FROM \"{table}\" t ORDER BY 1"),
    }
}

async fn import(kind: DatabaseKind, label: &str) -> TestDatabase {
    let db = TestDatabase::create(kind, label).await;
    let ddl = match kind {
        DatabaseKind::MySql => MYSQL_IMPORT,
        DatabaseKind::Postgres => POSTGRES_IMPORT,
    };
    execute(&db, ddl).await;
    execute(&db, ROWS).await;
    if kind == DatabaseKind::Postgres {
        execute(&db, POSTGRES_SEQUENCES).await;
    }
    db
}

async fn table_exists(db: &TestDatabase, table: &str) -> bool {
    let sql = match db.kind {
        DatabaseKind::MySql => format!(
            "SELECT CAST(COUNT(*) AS CHAR) FROM information_schema.tables WHERE table_schema = DATABASE() AND table_name = '{table}'"
        ),
        DatabaseKind::Postgres => format!(
            "SELECT COUNT(*)::text FROM information_schema.tables WHERE table_schema = current_schema() AND table_name = '{table}'"
        ),
    };
    text_rows(db, &sql).await[0][0].as_deref() == Some("1")
}

async fn count(db: &TestDatabase, table: &str) -> u64 {
    let sql = match db.kind {
        DatabaseKind::MySql => format!("SELECT CAST(COUNT(*) AS CHAR) FROM {table}"),
        DatabaseKind::Postgres => format!("SELECT COUNT(*)::text FROM {table}"),
    };
    text_rows(db, &sql).await[0][0]
        .as_deref()
        .and_then(|n| n.parse().ok())
        .expect("a count")
}

fn exercise<'a>(report: &'a Value, id: &str) -> &'a Value {
    report["exercises"]
        .as_array()
        .and_then(|all| all.iter().find(|e| e["id"] == id))
        .unwrap_or_else(|| panic!("no exercise {id} in {report}"))
}

#[tokio::test]
async fn check_env_on_an_import_says_per_exercise_what_can_run_and_what_is_missing() {
    for kind in BOTH {
        let db = import(kind, "import_check").await;
        let prefix = TestPrefix::new("import_check");
        let run = run_json(&db, &prefix, &valkey_url(), &["check-env"]);
        assert_eq!(run.code, Some(7), "{kind:?}: {}", run.stdout);
        let report = &run.json;
        for id in ["stats", "multi-level", "serve"] {
            let verdict = exercise(report, id);
            assert_eq!(verdict["can_run"], false, "{kind:?} {id}");
            assert_eq!(verdict["detail"], "needs table products", "{kind:?} {id}");
            assert_eq!(
                verdict["hint"], "run `workshop-cli seed` to add it (imported tables are left alone)",
                "{kind:?} {id}"
            );
        }
        for id in [
            "check-env",
            "cache-aside",
            "write-through",
            "write-behind",
            "stampede",
            "cluster",
            "leaderboard",
        ] {
            assert_eq!(exercise(report, id)["can_run"], true, "{kind:?} {id}: {report}");
        }
        assert_eq!(
            exercise(report, "cache-aside")["detail"],
            "can run: tables airport, flight and booking are there"
        );
        let catalogue = workshop_cli::workshop::catalogue::Catalogue::builtin().unwrap();
        assert_eq!(
            report["exercises"].as_array().map(Vec::len),
            Some(catalogue.exercises.len())
        );

        // The table says the same, one row per exercise.
        let dir = tempfile::tempdir().unwrap();
        let output = cli_against(dir.path(), &db.url(), &prefix, &valkey_url(), &["check-env"])
            .output()
            .unwrap();
        let text = support::stdout(&output);
        let row = text
            .lines()
            .find(|l| l.contains("4 multi-level"))
            .unwrap_or_else(|| panic!("{text}"));
        assert!(row.contains("✗"), "{row}");
        assert!(
            row.contains("needs table products") && row.contains("run `workshop-cli seed` to add it"),
            "{row}"
        );
    }
}

#[tokio::test]
async fn seed_adds_products_to_an_import_and_leaves_every_imported_table_as_it_was() {
    for kind in BOTH {
        let db = import(kind, "import_seed").await;
        let prefix = TestPrefix::new("import_seed");
        let before = fingerprint(&db).await;

        let run = run_json(&db, &prefix, &valkey_url(), &["seed", "--scale", "0.02"]);
        assert_eq!(run.code, Some(0), "{kind:?}: {}", run.stderr);
        assert_eq!(run.json["outcome"], "added_to_import", "{kind:?}");
        assert_eq!(run.json["tables"][0]["table"], "products");
        assert_eq!(run.json["tables"].as_array().map(Vec::len), Some(1));
        assert_eq!(run.json["imported_tables"].as_array().map(Vec::len), Some(7));
        assert_eq!(run.json["missing_tables"], serde_json::json!([]));
        assert_eq!(count(&db, "products").await, 200, "{kind:?}");
        assert_eq!(fingerprint(&db).await, before, "{kind:?}: imported tables changed");
        // No full-seed record: --reset must never take this for a database seed built.
        assert!(!table_exists(&db, "workshop_seed").await, "{kind:?}");
        assert!(table_exists(&db, "workshop_seed_import").await, "{kind:?}");

        // Now every exercise can run.
        let check = run_json(&db, &prefix, &valkey_url(), &["check-env"]);
        assert_eq!(check.code, Some(0), "{kind:?}: {}", check.stdout);
        for verdict in check.json["exercises"].as_array().unwrap() {
            assert_eq!(verdict["can_run"], true, "{kind:?}: {verdict}");
        }

        // And the exercises run on it, reading the imported rows.
        let read = run_json(
            &db,
            &prefix,
            &valkey_url(),
            &["cache-aside", "--id", "3797", "--runs", "3", "--fresh"],
        );
        assert_eq!(read.code, Some(0), "{kind:?}: {}", read.stderr);
        assert!(read.stdout.contains("FARQUHAR"), "{kind:?}: {}", read.stdout);
        let routes = run_json(
            &db,
            &prefix,
            &valkey_url(),
            &["cache-aside", "--query", "busiest-routes", "--runs", "2", "--fresh"],
        );
        assert_eq!(routes.code, Some(0), "{kind:?}: {}", routes.stderr);
        let stats = run_json(
            &db,
            &prefix,
            &valkey_url(),
            &["stats", "--requests", "300", "--keys", "50"],
        );
        assert_eq!(stats.code, Some(0), "{kind:?}: {}", stats.stderr);
        let multi = run_json(
            &db,
            &prefix,
            &valkey_url(),
            &["multi-level", "--requests", "300", "--keys", "50"],
        );
        assert_eq!(multi.code, Some(0), "{kind:?}: {}", multi.stderr);
        assert_eq!(
            fingerprint(&db).await,
            before,
            "{kind:?}: the exercises changed imported tables"
        );

        // A second seed finds its own tables and changes nothing.
        let again = run_json(&db, &prefix, &valkey_url(), &["seed", "--scale", "0.02"]);
        assert_eq!(again.code, Some(0), "{kind:?}: {}", again.stderr);
        assert_eq!(again.json["outcome"], "already_seeded", "{kind:?}");
        assert_eq!(
            again.json["tables"].as_array().map(Vec::len),
            Some(1),
            "{kind:?}: only ours counted"
        );

        // check-env said write-through can run: it does, on the imported
        // passenger table (its new id comes from the import's AUTO_INCREMENT
        // or serial), and --cleanup takes the passenger out again.
        let write = run_json(&db, &prefix, &valkey_url(), &["write-through", "--cleanup"]);
        assert_eq!(write.code, Some(0), "{kind:?}: {}", write.stderr);
        assert_eq!(count(&db, "passenger").await, 3, "{kind:?}");
    }
}

#[tokio::test]
async fn seed_reset_on_an_import_rebuilds_only_the_workshop_tables() {
    for kind in BOTH {
        let db = import(kind, "import_reset").await;
        let prefix = TestPrefix::new("import_reset");
        let before = fingerprint(&db).await;
        let first = run_json(&db, &prefix, &valkey_url(), &["seed", "--scale", "0.02"]);
        assert_eq!(first.code, Some(0), "{kind:?}: {}", first.stderr);
        execute(&db, "DELETE FROM products WHERE id > 10").await;
        assert_eq!(count(&db, "products").await, 10);

        let reset = run_json(&db, &prefix, &valkey_url(), &["seed", "--reset", "--scale", "0.02"]);
        assert_eq!(reset.code, Some(0), "{kind:?}: {}", reset.stderr);
        assert_eq!(reset.json["outcome"], "added_to_import", "{kind:?}");
        assert_eq!(count(&db, "products").await, 200, "{kind:?}: products rebuilt");
        for table in IMPORTED {
            assert!(table_exists(&db, table).await, "{kind:?}: {table} was dropped");
        }
        assert_eq!(fingerprint(&db).await, before, "{kind:?}: imported tables changed");
        assert!(!table_exists(&db, "workshop_seed").await, "{kind:?}");

        // A seed that stopped half-way (no record row yet): the next plain
        // seed knows products as its own and rebuilds it, still nothing else.
        execute(&db, "DELETE FROM workshop_seed_import").await;
        execute(&db, "DELETE FROM products WHERE id > 5").await;
        let again = run_json(&db, &prefix, &valkey_url(), &["seed", "--scale", "0.02"]);
        assert_eq!(again.code, Some(0), "{kind:?}: {}", again.stderr);
        assert_eq!(again.json["outcome"], "added_to_import", "{kind:?}");
        assert_eq!(count(&db, "products").await, 200, "{kind:?}");
        assert_eq!(fingerprint(&db).await, before, "{kind:?}: imported tables changed");

        // --reset on an import seed never touched: adds, drops nothing.
        let fresh = import(kind, "import_reset_fresh").await;
        let before = fingerprint(&fresh).await;
        let reset = run_json(&fresh, &prefix, &valkey_url(), &["seed", "--reset", "--scale", "0.02"]);
        assert_eq!(reset.code, Some(0), "{kind:?}: {}", reset.stderr);
        assert_eq!(reset.json["outcome"], "added_to_import", "{kind:?}");
        assert_eq!(fingerprint(&fresh).await, before, "{kind:?}");

        // The fingerprint sees rows and definitions: one changed value, or
        // one more index, and it differs.
        let shown = format!("{before:?}");
        assert!(shown.contains("FARQUHAR") && shown.contains("sitzplan_unq"), "{shown}");
        execute(
            &fresh,
            "UPDATE passenger SET lastname = 'Armstrong' WHERE passenger_id = 1",
        )
        .await;
        assert_ne!(fingerprint(&fresh).await, before, "{kind:?}");
        let changed = fingerprint(&fresh).await;
        execute(&fresh, "CREATE INDEX extra_idx ON airplane (type_id)").await;
        assert_ne!(fingerprint(&fresh).await, changed, "{kind:?}");
    }
}
