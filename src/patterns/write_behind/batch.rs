//! Batch planning: one batch of stream entries sorted out before the
//! database sees it (storable, repeated, vanished, rejected), and settled
//! after the commit (stored, delivered again, or a clash with another passenger).

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::{
    micros_since_epoch, QueuedEntry, Rejected, FIELD_FIRSTNAME, FIELD_LASTNAME, FIELD_PASSPORT, FIELD_SENT_AT,
};
use crate::config::DatabaseKind;
use crate::db::passengers::{PassengerFields, PassengerRow, NAME_CHARS, PASSPORT_CHARS};
use crate::db::write_behind::BatchInsert;

/// A queued entry that is a storable passenger.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuedWrite {
    pub entry_id: String,
    pub passenger: PassengerFields,
    pub sent_at: SystemTime,
}

fn checked_field(fields: &[(String, String)], name: &str, limit: usize) -> Result<String, String> {
    let value = fields
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.clone())
        .ok_or_else(|| format!("no {name} field"))?;
    if value.trim().is_empty() {
        return Err(format!("{name} is empty"));
    }
    let length = value.chars().count();
    if length > limit {
        return Err(format!("{name} is {length} characters long; the column holds {limit}"));
    }
    if value.contains('\0') {
        return Err(format!("{name} contains a NUL character"));
    }
    Ok(value)
}

/// Reads one entry as a passenger, or says why the database could never store it.
/// Lengths are checked here because MySQL's INSERT IGNORE would cut an over-long value.
pub fn queued_write(id: &str, fields: &[(String, String)]) -> Result<QueuedWrite, String> {
    let passenger = PassengerFields {
        passportno: checked_field(fields, FIELD_PASSPORT, PASSPORT_CHARS)?,
        firstname: checked_field(fields, FIELD_FIRSTNAME, NAME_CHARS)?,
        lastname: checked_field(fields, FIELD_LASTNAME, NAME_CHARS)?,
    };
    let sent_at = fields
        .iter()
        .find(|(k, _)| k == FIELD_SENT_AT)
        .and_then(|(_, v)| v.parse::<u64>().ok())
        .map(|micros| UNIX_EPOCH + Duration::from_micros(micros))
        .ok_or_else(|| format!("no valid {FIELD_SENT_AT} field"))?;
    Ok(QueuedWrite {
        entry_id: id.to_string(),
        passenger,
        sent_at,
    })
}

/// One batch, sorted out before the database sees it.
#[derive(Debug, Default)]
pub struct BatchPlan {
    /// One write per passport number, in stream order: what the INSERT gets.
    pub writes: Vec<QueuedWrite>,
    /// Later entries repeating an earlier one of the batch exactly: nothing more to store.
    pub repeats: Vec<String>,
    /// Entries deleted after delivery: only to be acknowledged.
    pub vanished: Vec<String>,
    pub rejected: Vec<Rejected>,
}

/// Passport numbers compare as the database's unique index compares them:
/// MySQL's default collation ignores case and trailing blanks; PostgreSQL
/// compares exactly (`AB1` and `ab1` are two passengers there).
fn passport_identity(passportno: &str, kind: DatabaseKind) -> String {
    match kind {
        DatabaseKind::MySql => passportno.trim_end().to_lowercase(),
        DatabaseKind::Postgres => passportno.to_string(),
    }
}

pub fn plan_batch(entries: Vec<QueuedEntry>, kind: DatabaseKind) -> BatchPlan {
    let mut plan = BatchPlan::default();
    let mut first_of: HashMap<String, usize> = HashMap::new();
    for entry in entries {
        let Some(fields) = entry.fields else {
            plan.vanished.push(entry.id);
            continue;
        };
        let write = match queued_write(&entry.id, &fields) {
            Ok(write) => write,
            Err(reason) => {
                plan.rejected.push(Rejected {
                    entry_id: entry.id,
                    fields,
                    reason,
                });
                continue;
            }
        };
        let identity = passport_identity(&write.passenger.passportno, kind);
        match first_of.get(&identity).map(|&index| &plan.writes[index]) {
            None => {
                first_of.insert(identity, plan.writes.len());
                plan.writes.push(write);
            }
            Some(first) if first.passenger == write.passenger => plan.repeats.push(entry.id),
            Some(first) => {
                let reason = format!(
                    "passport {} is also in entry {} of the same batch, with other names",
                    write.passenger.passportno, first.entry_id
                );
                plan.rejected.push(Rejected {
                    entry_id: entry.id,
                    fields,
                    reason,
                });
            }
        }
    }
    plan
}

/// The batch after the commit: which writes the database holds as asked,
/// and which passport numbers belong to someone else.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Settled {
    pub stored: Vec<QueuedWrite>,
    /// Writes whose row was already there with the same values: re-deliveries.
    pub already_stored: u64,
    pub conflicts: Vec<Rejected>,
}

fn same_passenger(asked: &PassengerFields, stored: &PassengerRow) -> bool {
    let same = |a: &str, b: Option<&String>| b.is_some_and(|b| a.trim_end() == b.trim_end());
    same(&asked.firstname, stored.firstname.as_ref()) && same(&asked.lastname, stored.lastname.as_ref())
}

/// A skipped row with the same names is a write delivered again (harmless);
/// with other names, a different passenger holds that passport number, and
/// the write is rejected instead of silently dropped.
pub fn settle(writes: Vec<QueuedWrite>, insert: &BatchInsert, kind: DatabaseKind) -> Settled {
    let mut settled = Settled::default();
    let skipped = (writes.len() as u64).saturating_sub(insert.inserted);
    let stored: HashMap<String, &PassengerRow> = insert
        .stored
        .iter()
        .map(|row| (passport_identity(&row.passportno, kind), row))
        .collect();
    for write in writes {
        match stored.get(&passport_identity(&write.passenger.passportno, kind)) {
            Some(row) if !same_passenger(&write.passenger, row) => settled.conflicts.push(Rejected {
                reason: format!(
                    "passport {} belongs to passenger {} ({} {}) in the database",
                    write.passenger.passportno,
                    row.passenger_id,
                    row.firstname.as_deref().unwrap_or("NULL"),
                    row.lastname.as_deref().unwrap_or("NULL")
                ),
                fields: vec![
                    (FIELD_PASSPORT.into(), write.passenger.passportno.clone()),
                    (FIELD_FIRSTNAME.into(), write.passenger.firstname.clone()),
                    (FIELD_LASTNAME.into(), write.passenger.lastname.clone()),
                    (FIELD_SENT_AT.into(), micros_since_epoch(write.sent_at).to_string()),
                ],
                entry_id: write.entry_id,
            }),
            _ => settled.stored.push(write),
        }
    }
    settled.already_stored = skipped.saturating_sub(settled.conflicts.len() as u64);
    settled
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(id: &str, passport: &str, first: &str) -> QueuedEntry {
        QueuedEntry {
            id: id.into(),
            fields: Some(vec![
                (FIELD_PASSPORT.into(), passport.into()),
                (FIELD_FIRSTNAME.into(), first.into()),
                (FIELD_LASTNAME.into(), "Lovelace".into()),
                (FIELD_SENT_AT.into(), "1700000000000000".into()),
            ]),
        }
    }

    #[test]
    fn an_entry_the_database_cannot_take_is_rejected_with_the_reason() {
        let mut long = entry("1-0", "W1", "Ada");
        if let Some(fields) = long.fields.as_mut() {
            fields[0].1 = "W1234567890".into();
        }
        let plan = plan_batch(vec![long, entry("2-0", "W2", "")], DatabaseKind::MySql);
        assert!(plan.writes.is_empty());
        let reasons: Vec<&str> = plan.rejected.iter().map(|r| r.reason.as_str()).collect();
        assert_eq!(
            reasons,
            [
                "passportno is 11 characters long; the column holds 9",
                "firstname is empty"
            ]
        );
    }

    #[test]
    fn a_repeated_entry_is_stored_once_and_a_clashing_one_rejected() {
        let plan = plan_batch(
            vec![
                entry("1-0", "W1", "Ada"),
                entry("2-0", "W1", "Ada"),
                entry("3-0", "w1", "Grace"),
                QueuedEntry {
                    id: "4-0".into(),
                    fields: None,
                },
            ],
            DatabaseKind::MySql,
        );
        assert_eq!(plan.writes.len(), 1);
        assert_eq!(plan.repeats, vec!["2-0".to_string()]);
        assert_eq!(plan.vanished, vec!["4-0".to_string()]);
        assert_eq!(plan.rejected[0].entry_id, "3-0");
        assert!(plan.rejected[0].reason.contains("entry 1-0"));
    }

    fn stored(id: i64, passport: &str, first: &str) -> PassengerRow {
        PassengerRow {
            passenger_id: id,
            passportno: passport.into(),
            firstname: Some(first.into()),
            lastname: Some("Lovelace".into()),
        }
    }

    #[test]
    fn a_skipped_row_with_the_same_names_is_a_redelivery_and_other_names_a_conflict() {
        let plan = plan_batch(
            vec![
                entry("1-0", "W1", "Ada"),
                entry("2-0", "W2", "Ada"),
                entry("3-0", "W3", "Ada"),
            ],
            DatabaseKind::MySql,
        );
        let insert = BatchInsert {
            inserted: 1,
            stored: vec![stored(7, "W1", "Ada"), stored(8, "W2", "Grace"), stored(9, "W3", "Ada")],
        };
        let settled = settle(plan.writes, &insert, DatabaseKind::MySql);
        assert_eq!(settled.stored.len(), 2);
        assert_eq!(settled.already_stored, 1);
        assert_eq!(settled.conflicts.len(), 1);
        assert_eq!(
            settled.conflicts[0].reason,
            "passport W2 belongs to passenger 8 (Grace Lovelace) in the database"
        );
    }

    #[test]
    fn passports_differing_only_in_case_are_two_passengers_on_postgres_and_a_clash_on_mysql() {
        let entries = || vec![entry("1-0", "AB1", "Ada"), entry("2-0", "ab1", "Ada")];
        let postgres = plan_batch(entries(), DatabaseKind::Postgres);
        assert_eq!(postgres.writes.len(), 2);
        assert!(postgres.repeats.is_empty());
        let mysql = plan_batch(entries(), DatabaseKind::MySql);
        assert_eq!(mysql.writes.len(), 1);
        assert_eq!(
            mysql.rejected.len(),
            1,
            "MySQL's index sees one passport: the second entry clashes"
        );
    }
}
