//! Exercise 9, `workshop-cli leaderboard`: the busiest departure airports by
//! bookings, as the SQL aggregate and as a sorted set built from it (`ZADD`).
//! Simulated new bookings update both in one write path (INSERT, then
//! `ZINCRBY`); the run checks that the top N and one airport's rank agree
//! before and after, and times both sides' reads.

use std::time::{Duration, Instant};

use crate::cache::{KeyScheme, Valkey};
use crate::config::Config;
use crate::db::bookings::AirportBookings;
use crate::db::passengers::{PassengerFields, PassengerWriteError};
use crate::db::{Database, DbError};
use crate::error::{Result, WorkshopError};
use crate::exercises::progress::RunProgress;
use crate::exercises::services::{self, Needs, ValkeyNeed};
use crate::measure::zipf::KeySampler;
use crate::measure::{self, LatencyRecorder, LatencySummary};
use crate::rng::SplitMix64;

pub const MAX_TOP: u64 = 1000;
pub const MAX_BOOKINGS: u64 = 100_000;
pub const MAX_RUNS: u64 = 10_000;
/// Timed reads without `--runs`, fewer (at least 3) when they would keep the
/// database busy for more than [`READ_BUDGET`]: on a FlughafenDB import with
/// 3 million bookings one aggregate takes 2 to 5 s.
pub const DEFAULT_RUNS: u64 = 20;
const READ_BUDGET: Duration = Duration::from_secs(30);
/// `flight.from` and `airport.airport_id` are SMALLINT.
const MAX_AIRPORT_ID: i64 = i16::MAX as i64;
/// The simulated bookings go to the lowest-numbered flights, Zipf-skewed
/// (s = 1) over this many: a few airports gain most, so the ranking moves.
const FLIGHTS_BOOKED: u64 = 200;
/// Members per ZADD when the sorted set is built.
const ZADD_CHUNK: usize = 1000;
const PASSPORT_ATTEMPTS: u32 = 5;

#[derive(Debug, Clone)]
pub struct LeaderboardOptions {
    /// How many airports the top list shows and compares.
    pub top: u64,
    /// The airport whose rank is compared; `None` picks the N-th busiest.
    pub airport: Option<i64>,
    /// Simulated new bookings, each written to the database and the sorted set.
    pub bookings: u64,
    /// Timed reads of each kind, on each side; `None`: 20, fewer on a
    /// database where the aggregate is slow (see [`DEFAULT_RUNS`]).
    pub runs: Option<u64>,
    /// Keep the bookings and the sorted set (`workshop-cli clean` removes them).
    pub keep: bool,
    /// Seed of the flights the bookings pick.
    pub seed: u64,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct LeaderboardOutcome {
    pub exercise: &'static str,
    pub database: String,
    pub key: String,
    pub top: u64,
    pub airport_id: i64,
    pub build: Build,
    /// Right after the build.
    pub before: Comparison,
    pub bookings: BookingRun,
    /// After the simulated bookings.
    pub after: Comparison,
    pub reads: Reads,
    pub cleanup: Cleanup,
    pub warnings: Vec<String>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct Build {
    /// The full aggregate (every airport), once.
    #[serde(serialize_with = "measure::as_millis", rename = "sql_aggregate_ms")]
    pub sql_aggregate: Duration,
    /// DEL + ZADD of every airport, one MULTI/EXEC.
    #[serde(serialize_with = "measure::as_millis", rename = "zadd_ms")]
    pub zadd: Duration,
    /// Airports with at least one departing booking: the sorted set's members.
    pub members: u64,
}

/// What each side says about the top N and one airport.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Comparison {
    pub top_database: Vec<AirportBookings>,
    pub top_valkey: Vec<AirportBookings>,
    pub top_agree: bool,
    pub rank: RankComparison,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct RankComparison {
    pub airport_id: i64,
    pub database_bookings: i64,
    /// 1 + the airports with more bookings (ties share a rank); `None` without bookings.
    pub database_rank: Option<u64>,
    /// ZSCORE.
    pub valkey_score: Option<i64>,
    /// 1 + ZCOUNT of the higher scores: the same rank as SQL's.
    pub valkey_rank: Option<u64>,
    /// ZREVRANK + 1: the position, which among ties depends on the member's name.
    pub valkey_position: Option<u64>,
    pub agree: bool,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct BookingRun {
    pub requested: u64,
    /// Committed in the database.
    pub written: u64,
    /// Of those, also counted in the sorted set.
    pub counted: u64,
    /// The passenger the run created to book (in the ledger).
    pub passenger_id: Option<i64>,
    /// INSERT + COMMIT per booking.
    pub database: Option<LatencySummary>,
    /// ZINCRBY per booking.
    pub valkey: Option<LatencySummary>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct Reads {
    pub runs: u64,
    /// SQL `GROUP BY … ORDER BY … LIMIT N` versus `ZRANGE … REV WITHSCORES`.
    pub top: SideBySide,
    /// SQL count + airports above versus ZSCORE/ZREVRANK + ZCOUNT.
    pub rank: SideBySide,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct SideBySide {
    pub database: Option<LatencySummary>,
    pub valkey: Option<LatencySummary>,
    /// Database p50 / Valkey p50.
    pub speedup: Option<f64>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct Cleanup {
    pub kept: bool,
    pub bookings_removed: bool,
    pub key_removed: bool,
}

impl LeaderboardOutcome {
    /// Exit code: both sides must agree after the bookings, and every booking must be counted.
    pub fn verdict(&self) -> Result<()> {
        if self.bookings.counted < self.bookings.written {
            return Err(WorkshopError::incomplete(format!(
                "{} of {} committed bookings are missing from the sorted set (ZINCRBY failed); the leaderboard is behind the database until it is rebuilt",
                self.bookings.written - self.bookings.counted,
                self.bookings.written
            )));
        }
        if !self.after.top_agree || !self.after.rank.agree {
            return Err(WorkshopError::incomplete(
                "the sorted set and the SQL aggregate disagree (see the table); run again, and check that nothing else writes bookings meanwhile",
            ));
        }
        Ok(())
    }
}

fn validate(options: &LeaderboardOptions) -> Result<()> {
    if options.top == 0 || options.top > MAX_TOP {
        return Err(WorkshopError::invalid(format!(
            "--top must be from 1 to {MAX_TOP} (got {})",
            options.top
        )));
    }
    if options.bookings > MAX_BOOKINGS {
        return Err(WorkshopError::invalid(format!(
            "--bookings must be from 0 to {MAX_BOOKINGS} (got {})",
            options.bookings
        )));
    }
    if let Some(runs) = options.runs {
        if runs == 0 || runs > MAX_RUNS {
            return Err(WorkshopError::invalid(format!(
                "--runs must be from 1 to {MAX_RUNS} (got {runs})"
            )));
        }
    }
    if let Some(id) = options.airport {
        if !(1..=MAX_AIRPORT_ID).contains(&id) {
            return Err(WorkshopError::invalid(format!(
                "--airport must be an airport_id from 1 to {MAX_AIRPORT_ID} (got {id})"
            )));
        }
    }
    Ok(())
}

pub async fn measure(
    config: &Config,
    options: LeaderboardOptions,
    progress: &dyn RunProgress,
) -> Result<LeaderboardOutcome> {
    validate(&options)?;
    progress.phase("connecting", None);
    // The database first (its airport is checked before Valkey is asked), then Valkey.
    let (db, database) = services::connect_database(
        config,
        Needs {
            pool_connections: 2,
            valkey: ValkeyNeed::Required,
            recording_as: Some("leaderboard"),
        },
    )
    .await?;
    let valkey = services::valkey(config).await?;
    if let Some(id) = options.airport {
        if !db.airport_exists(id).await? {
            return Err(WorkshopError::invalid(format!(
                "--airport {id} is not in the airport table; pick an airport_id that exists (e.g. from `--top`)"
            )));
        }
    }
    db.warm_up(1).await?;
    valkey.round_trip().await?;
    let key = KeyScheme::new(&config.key_prefix, &config.database).departures_leaderboard();
    let board = Board {
        db: &db,
        valkey: &valkey,
        key: &key,
        top: options.top,
    };

    progress.phase("SQL aggregate and ZADD", None);
    let started = Instant::now();
    let all = db.departures_leaderboard(None).await?;
    let sql_aggregate = started.elapsed();
    let started = Instant::now();
    board.build(&all).await?;
    let build = Build {
        sql_aggregate,
        zadd: started.elapsed(),
        members: all.len() as u64,
    };
    let mut warnings = Vec::new();
    if all.is_empty() {
        warnings.push("no booking has a flight: the leaderboard starts empty; run `workshop-cli seed` for data".into());
    }
    // A timed run is the top N and a rank (two more aggregates): about three aggregates.
    let runs = options.runs.unwrap_or_else(|| {
        let per_run = sql_aggregate.as_secs_f64() * 3.0;
        let fit = (READ_BUDGET.as_secs_f64() / per_run.max(1e-9)) as u64;
        fit.clamp(3, DEFAULT_RUNS)
    });
    if options.runs.is_none() && runs < DEFAULT_RUNS {
        warnings.push(format!(
            "the aggregate took {:.1} s, so {runs} timed reads of each kind instead of {DEFAULT_RUNS} (about {} s of database time); give --runs to choose",
            sql_aggregate.as_secs_f64(),
            READ_BUDGET.as_secs()
        ));
    }
    let airport_id = options
        .airport
        .or_else(|| all.get(options.top as usize - 1).or(all.last()).map(|e| e.airport_id))
        .unwrap_or(1);

    let mut bookings = BookingRun {
        requested: options.bookings,
        written: 0,
        counted: 0,
        passenger_id: None,
        database: None,
        valkey: None,
    };
    let written = async {
        let before = board.compare(airport_id).await?;
        book(&board, &options, &mut bookings, progress).await?;
        let after = board.compare(airport_id).await?;
        let reads = board.timed_reads(airport_id, runs, progress).await?;
        Ok::<_, WorkshopError>((before, after, reads))
    }
    .await;

    // Clean up also when the run failed part-way: the passenger takes its bookings with it.
    progress.phase("cleaning up", None);
    let cleanup = if options.keep {
        Cleanup {
            kept: true,
            bookings_removed: false,
            key_removed: false,
        }
    } else {
        let bookings_removed = match bookings.passenger_id {
            Some(id) => {
                db.undo_changes_of(crate::db::changes::PASSENGER_TABLE, id, 0).await?;
                true
            }
            None => false,
        };
        Cleanup {
            kept: false,
            bookings_removed,
            key_removed: valkey.delete(&key).await?,
        }
    };
    progress.finish_phase();
    let (before, after, reads) = written?;
    if options.keep && bookings.passenger_id.is_some() {
        warnings.push(format!(
            "--keep: {} bookings of passenger {} and the key {key} stay; `workshop-cli clean` removes them",
            bookings.written,
            bookings.passenger_id.unwrap_or_default()
        ));
    }
    db.close().await;
    Ok(LeaderboardOutcome {
        exercise: "leaderboard",
        database,
        key,
        top: options.top,
        airport_id,
        build,
        before,
        bookings,
        after,
        reads,
        cleanup,
        warnings,
    })
}

/// Writes the simulated bookings: INSERT (committed), then ZINCRBY of the
/// flight's departure airport. Stops at the first failure.
async fn book(
    board: &Board<'_>,
    options: &LeaderboardOptions,
    run: &mut BookingRun,
    progress: &dyn RunProgress,
) -> Result<()> {
    if options.bookings == 0 {
        return Ok(());
    }
    let flights = board.db.flights_to_book(FLIGHTS_BOOKED).await?;
    if flights.is_empty() {
        return Err(WorkshopError::invalid(
            "the flight table is empty, so there is nothing to book; run `workshop-cli seed` first or use --bookings 0",
        ));
    }
    let passenger_id = create_passenger(board.db, options.seed).await?;
    run.passenger_id = Some(passenger_id);
    let sampler = KeySampler::new(flights.len() as u64, 1.0);
    let mut rng = SplitMix64::new(options.seed);
    let mut database = LatencyRecorder::new();
    let mut valkey = LatencyRecorder::new();
    progress.phase("new bookings", Some(options.bookings));
    let result = async {
        for _ in 0..options.bookings {
            let (flight_id, airport_id) = flights[(sampler.sample(&mut rng) - 1) as usize];
            let started = Instant::now();
            board.db.insert_booking(flight_id, passenger_id).await?;
            database.record(started.elapsed());
            run.written += 1;
            let started = Instant::now();
            board.increment(airport_id).await?;
            valkey.record(started.elapsed());
            run.counted += 1;
            progress.advance(1);
        }
        Ok::<(), WorkshopError>(())
    }
    .await;
    run.database = database.summary();
    run.valkey = valkey.summary();
    result
}

/// A passenger of the run's own (recorded in the ledger): `clean`, or the
/// run's own clean-up, deletes it with its bookings.
async fn create_passenger(db: &Database, seed: u64) -> Result<i64> {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let mut rng = SplitMix64::new(seed ^ nanos ^ u64::from(std::process::id()));
    for _ in 0..PASSPORT_ATTEMPTS {
        let fields = PassengerFields {
            // `L` for leaderboard: the fixtures' passports start with `P`.
            passportno: format!("L{:08}", rng.below(100_000_000)),
            firstname: "Leader".into(),
            lastname: "Board".into(),
        };
        match db.insert_passenger(&fields).await {
            Ok(row) => return Ok(row.passenger_id),
            Err(PassengerWriteError::DuplicatePassport) => continue,
            Err(PassengerWriteError::Database(error)) => return Err(error.into()),
            Err(PassengerWriteError::NotFound) => break,
        }
    }
    Err(
        DbError::Query("could not create the passenger who books: every generated passport number was taken".into())
            .into(),
    )
}

/// The two sides of one leaderboard.
struct Board<'a> {
    db: &'a Database,
    valkey: &'a Valkey,
    key: &'a str,
    top: u64,
}

impl Board<'_> {
    /// DEL + ZADD of every airport in one MULTI/EXEC: readers never see half a board.
    async fn build(&self, all: &[AirportBookings]) -> Result<()> {
        let mut pipe = redis::pipe();
        pipe.atomic().cmd("DEL").arg(self.key).ignore();
        for chunk in all.chunks(ZADD_CHUNK) {
            let command = pipe.cmd("ZADD").arg(self.key);
            for entry in chunk {
                command.arg(entry.bookings).arg(entry.airport_id);
            }
            command.ignore();
        }
        self.valkey.query_pipeline::<()>("ZADD", &pipe).await?;
        Ok(())
    }

    async fn increment(&self, airport_id: i64) -> Result<()> {
        let command = redis::cmd("ZINCRBY").arg(self.key).arg(1).arg(airport_id).clone();
        let _: f64 = self.valkey.query("ZINCRBY", &command).await?;
        Ok(())
    }

    async fn valkey_top(&self) -> Result<Vec<AirportBookings>> {
        let entries = self.valkey.top_scored(self.key, self.top).await?;
        Ok(entries
            .into_iter()
            .map(|(member, score)| AirportBookings {
                airport_id: member.parse().unwrap_or(-1),
                bookings: score as i64,
            })
            .collect())
    }

    /// ZSCORE and ZREVRANK in one round trip, then ZCOUNT of the higher scores.
    async fn valkey_rank(&self, airport_id: i64) -> Result<(Option<i64>, Option<u64>, Option<u64>)> {
        let mut pipe = redis::pipe();
        pipe.cmd("ZSCORE").arg(self.key).arg(airport_id);
        pipe.cmd("ZREVRANK").arg(self.key).arg(airport_id);
        let (score, position): (Option<f64>, Option<u64>) = self.valkey.query_pipeline("ZSCORE", &pipe).await?;
        let Some(score) = score else {
            return Ok((None, None, None));
        };
        let command = redis::cmd("ZCOUNT")
            .arg(self.key)
            .arg(format!("({score}"))
            .arg("+inf")
            .clone();
        let above: u64 = self.valkey.query("ZCOUNT", &command).await?;
        Ok((Some(score as i64), Some(above + 1), position.map(|p| p + 1)))
    }

    async fn compare(&self, airport_id: i64) -> Result<Comparison> {
        let top_database = self.db.departures_leaderboard(Some(self.top)).await?;
        let top_valkey = self.valkey_top().await?;
        let (database_bookings, rank) = self.db.departures_rank(airport_id).await?;
        let database_rank = (database_bookings > 0).then_some(rank);
        let (valkey_score, valkey_rank, valkey_position) = self.valkey_rank(airport_id).await?;
        let agree = database_rank == valkey_rank && (valkey_score.unwrap_or(0) == database_bookings);
        Ok(Comparison {
            top_agree: tops_agree(&top_database, &top_valkey),
            top_database,
            top_valkey,
            rank: RankComparison {
                airport_id,
                database_bookings,
                database_rank,
                valkey_score,
                valkey_rank,
                valkey_position,
                agree,
            },
        })
    }

    async fn timed_reads(&self, airport_id: i64, runs: u64, progress: &dyn RunProgress) -> Result<Reads> {
        let mut recorders: [LatencyRecorder; 4] = Default::default();
        progress.phase("timed reads", Some(runs));
        for _ in 0..runs {
            let started = Instant::now();
            self.db.departures_leaderboard(Some(self.top)).await?;
            recorders[0].record(started.elapsed());
            let started = Instant::now();
            self.valkey_top().await?;
            recorders[1].record(started.elapsed());
            let started = Instant::now();
            self.db.departures_rank(airport_id).await?;
            recorders[2].record(started.elapsed());
            let started = Instant::now();
            self.valkey_rank(airport_id).await?;
            recorders[3].record(started.elapsed());
            progress.advance(1);
        }
        let side = |database: &LatencyRecorder, valkey: &LatencyRecorder| {
            let (database, valkey) = (database.summary(), valkey.summary());
            SideBySide {
                speedup: database
                    .as_ref()
                    .zip(valkey.as_ref())
                    .and_then(|(d, v)| measure::speedup(d, v)),
                database,
                valkey,
            }
        };
        Ok(Reads {
            runs,
            top: side(&recorders[0], &recorders[1]),
            rank: side(&recorders[2], &recorders[3]),
        })
    }
}

/// The two top lists agree when their counts match place by place and every
/// airport Valkey lists has SQL's count for it. Tied airports may be listed
/// in another order (SQL breaks ties by id, a sorted set by member name), and
/// at the cut-off either may list another one of a tie.
pub fn tops_agree(database: &[AirportBookings], valkey: &[AirportBookings]) -> bool {
    if database.len() != valkey.len() {
        return false;
    }
    let same_counts = database.iter().zip(valkey).all(|(d, v)| d.bookings == v.bookings);
    let cut_off = database.last().map_or(0, |e| e.bookings);
    let same_airports = valkey
        .iter()
        .all(|v| match database.iter().find(|d| d.airport_id == v.airport_id) {
            Some(d) => d.bookings == v.bookings,
            None => v.bookings == cut_off,
        });
    same_counts && same_airports
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(pairs: &[(i64, i64)]) -> Vec<AirportBookings> {
        pairs
            .iter()
            .map(|&(airport_id, bookings)| AirportBookings { airport_id, bookings })
            .collect()
    }

    #[test]
    fn equal_lists_agree() {
        let list = entries(&[(1, 30), (2, 20), (3, 10)]);
        assert!(tops_agree(&list, &list));
    }

    #[test]
    fn ties_in_another_order_or_at_the_cut_off_agree() {
        let database = entries(&[(1, 30), (2, 20), (3, 20), (4, 10)]);
        let valkey = entries(&[(1, 30), (3, 20), (2, 20), (9, 10)]);
        assert!(tops_agree(&database, &valkey));
    }

    #[test]
    fn a_different_count_or_a_missing_airport_disagrees() {
        let database = entries(&[(1, 30), (2, 20)]);
        assert!(!tops_agree(&database, &entries(&[(1, 30), (2, 21)])));
        assert!(!tops_agree(
            &database,
            &entries(&[(1, 30), (7, 20)]).into_iter().take(1).collect::<Vec<_>>()
        ));
        assert!(!tops_agree(&database, &entries(&[(2, 30), (1, 20)])));
    }

    fn options() -> LeaderboardOptions {
        LeaderboardOptions {
            top: 10,
            airport: None,
            bookings: 1000,
            runs: Some(20),
            keep: false,
            seed: 1,
        }
    }

    #[test]
    fn out_of_range_options_are_rejected_with_the_range() {
        let top = LeaderboardOptions { top: 0, ..options() };
        assert_eq!(
            validate(&top).unwrap_err().to_string(),
            "--top must be from 1 to 1000 (got 0)"
        );
        let airport = LeaderboardOptions {
            airport: Some(40_000),
            ..options()
        };
        assert_eq!(
            validate(&airport).unwrap_err().to_string(),
            "--airport must be an airport_id from 1 to 32767 (got 40000)"
        );
        assert!(validate(&options()).is_ok());
    }
}
