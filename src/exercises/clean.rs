//! `workshop-cli clean`: undoes what the workshop wrote to the configured
//! database — deletes the rows it created, gives the rows it updated their
//! old values back (both from the ledger, `db/changes.rs`) — and deletes its
//! Valkey keys. Rows the workshop did not write are never touched; a row
//! someone changed after the workshop wrote it is left alone and reported.

use std::collections::BTreeMap;

use crate::cache::{CacheError, KeyScheme, Valkey};
use crate::config::{Config, Source, DEFAULT_KEY_PREFIX};
use crate::db::changes::{by_row, RowChanges, Undone};
use crate::db::Database;
use crate::error::{Result, WorkshopError};
use crate::exercises::progress::RunProgress;
use crate::exercises::services::{self, Needs, ValkeyNeed};
use crate::exercises::Outcome;
use crate::patterns::write_behind::WriteQueue;

#[derive(Debug, Clone, Copy, Default)]
pub struct CleanOptions {
    /// Say what would be removed; change nothing.
    pub dry_run: bool,
    /// Also delete a write-behind stream that holds unflushed writes.
    pub force: bool,
}

/// Per table: what was (or, in a dry run, would be) undone.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct TableCleanup {
    pub table: String,
    /// Rows the workshop created, deleted.
    pub deleted: u64,
    /// Rows the workshop updated, given their old values back.
    pub restored: u64,
    /// Rows in the ledger that were no longer there.
    pub already_gone: u64,
    /// Rows changed by someone else since the workshop wrote them: left alone.
    pub left_alone: u64,
    /// The ids of the rows left alone (the first few).
    pub left_alone_ids: Vec<i64>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct CleanOutcome {
    pub exercise: &'static str,
    pub database: String,
    pub dry_run: bool,
    pub tables: Vec<TableCleanup>,
    /// The Valkey prefix whose keys were (or would be) deleted.
    pub key_prefix: String,
    pub keys: u64,
    /// Acknowledged write-behind writes that were not in the database yet.
    pub unflushed_writes: u64,
    /// Nothing was (or would be) removed.
    pub nothing_to_do: bool,
}

/// Ids listed for rows left alone; the rest are counted.
const LEFT_ALONE_SHOWN: usize = 10;

/// The prefix of every key the workshop wrote for the configured database:
/// `{prefix}{engine}-{hash}:`. Another database's entries under the same
/// prefix on a shared Valkey are not this run's to remove.
pub fn workshop_key_prefix(keys: &KeyScheme) -> String {
    keys.source_prefix().to_string()
}

pub async fn measure(config: &Config, options: CleanOptions, progress: &dyn RunProgress) -> Result<CleanOutcome> {
    progress.phase("connecting", None);
    let valkey = services::valkey(config).await?;
    let (db, _) = services::connect_database(
        config,
        Needs {
            pool_connections: 1,
            valkey: ValkeyNeed::Required,
            recording_as: None,
        },
    )
    .await?;
    let keys = KeyScheme::new(&config.key_prefix, &config.database);
    progress.phase(if options.dry_run { "counting" } else { "cleaning" }, None);
    let outcome = clean(&db, &valkey, &keys, options).await;
    progress.finish_phase();
    db.close().await;
    outcome
}

impl Outcome for CleanOutcome {}

/// Refuses (exit 6, nothing changed) while the write-behind stream holds
/// acknowledged writes the database does not have, unless `force`.
pub async fn clean(db: &Database, valkey: &Valkey, keys: &KeyScheme, options: CleanOptions) -> Result<CleanOutcome> {
    let queue = WriteQueue::new(
        valkey.clone(),
        keys.clone(),
        crate::cache::TtlPolicy::fixed(std::time::Duration::from_secs(1)),
    );
    let unflushed = queue.depth().await?.entries;
    if unflushed > 0 && !options.force && !options.dry_run {
        return Err(WorkshopError::invalid(format!(
            "{unflushed} acknowledged write-behind write(s) in {} are not in the database yet; run `workshop-cli write-behind --flush-only` first (clean then removes those rows too), or `workshop-cli clean --force` to drop them; nothing was changed",
            keys.write_behind_stream()
        )));
    }
    let rows = by_row(&db.changes().await?);
    let mut tables: BTreeMap<String, TableCleanup> = BTreeMap::new();
    for row in &rows {
        let undone = if options.dry_run {
            planned(row)
        } else {
            db.undo_row(row).await?
        };
        let tally = tables.entry(row.table.clone()).or_insert_with(|| TableCleanup {
            table: row.table.clone(),
            ..TableCleanup::default()
        });
        match undone {
            Undone::Deleted => tally.deleted += 1,
            Undone::Restored => tally.restored += 1,
            Undone::AlreadyGone => tally.already_gone += 1,
            Undone::ChangedSince => {
                tally.left_alone += 1;
                if tally.left_alone_ids.len() < LEFT_ALONE_SHOWN {
                    tally.left_alone_ids.push(row.row_id);
                }
            }
        }
    }
    let prefix = workshop_key_prefix(keys);
    let removed_keys = if options.dry_run {
        valkey.scan_prefixed(&prefix).await?.len() as u64
    } else {
        delete_keys(valkey, &prefix).await?
    };
    let tables: Vec<TableCleanup> = tables.into_values().collect();
    let nothing_to_do = removed_keys == 0
        && tables
            .iter()
            .all(|t| t.deleted == 0 && t.restored == 0 && t.already_gone == 0);
    Ok(CleanOutcome {
        exercise: "clean",
        database: db.target().to_string(),
        dry_run: options.dry_run,
        tables,
        key_prefix: prefix,
        keys: removed_keys,
        unflushed_writes: unflushed,
        nothing_to_do,
    })
}

/// What undoing would do, told from the ledger alone (a dry run reads no rows).
fn planned(row: &RowChanges) -> Undone {
    if row.created {
        Undone::Deleted
    } else {
        Undone::Restored
    }
}

async fn delete_keys(valkey: &Valkey, prefix: &str) -> std::result::Result<u64, CacheError> {
    valkey.delete_prefixed(prefix).await
}

/// The command that undoes a run's writes later: `clean` with the flags that
/// name the same database, Valkey and prefix. Targets given in the
/// environment or `.env` are found there again; one given as a flag is
/// repeated, masked (the password is never printed: put it in for `***`).
pub fn clean_command(config: &Config) -> String {
    let quote = |text: &str| format!("'{}'", text.replace('\'', "'\\''"));
    let mut command = String::from("workshop-cli clean");
    if config.database.source == Source::Flag {
        command.push_str(&format!(" --database-url {}", quote(&config.database.masked())));
    }
    if config.valkey.source == Source::Flag {
        command.push_str(&format!(" --valkey-url {}", quote(&config.valkey.masked())));
    }
    if config.key_prefix != DEFAULT_KEY_PREFIX {
        command.push_str(&format!(" --key-prefix {}", quote(&config.key_prefix)));
    }
    command
}

/// What an `--update` without `--cleanup` leaves behind, and how to undo it.
pub fn permanent_change_note(what: &str, config: &Config) -> String {
    format!(
        "{what} stays changed in the database; `{}` restores its old values (recorded in {})",
        clean_command(config),
        crate::db::changes::LEDGER_TABLE
    )
}
