//! The leaderboard exercise's SQL side: bookings per departure airport (the
//! aggregate a sorted set replaces), one airport's count and rank, and the
//! simulated new booking of the write path.

use sqlx::Row;

use super::changes::numbered;
use super::{Database, DbError, Pool};
use crate::config::DatabaseKind;

/// One airport's place in the leaderboard: departing bookings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct AirportBookings {
    pub airport_id: i64,
    pub bookings: i64,
}

/// `flight.from` is a reserved word on both engines: quoted per dialect.
fn from_column(kind: DatabaseKind) -> &'static str {
    match kind {
        DatabaseKind::MySql => "f.`from`",
        DatabaseKind::Postgres => "f.\"from\"",
    }
}

/// Bookings per departure airport, busiest first (ties by airport id);
/// `LIMIT ?` when `top` is given.
fn leaderboard_sql(kind: DatabaseKind, limited: bool) -> String {
    let from = from_column(kind);
    let limit = if limited { " LIMIT ?" } else { "" };
    numbered(
        kind,
        &format!(
            "SELECT CAST({from} AS {int}) AS airport_id, COUNT(*) AS bookings \
             FROM booking b JOIN flight f ON f.flight_id = b.flight_id \
             GROUP BY {from} ORDER BY bookings DESC, airport_id{limit}",
            int = big_int(kind)
        ),
    )
}

fn big_int(kind: DatabaseKind) -> &'static str {
    match kind {
        DatabaseKind::MySql => "SIGNED",
        DatabaseKind::Postgres => "BIGINT",
    }
}

/// One airport's departing bookings.
fn airport_count_sql(kind: DatabaseKind) -> String {
    numbered(
        kind,
        &format!(
            "SELECT COUNT(*) FROM booking b JOIN flight f ON f.flight_id = b.flight_id WHERE {} = ?",
            from_column(kind)
        ),
    )
}

/// How many airports have more departing bookings than `?`.
fn airports_above_sql(kind: DatabaseKind) -> String {
    let from = from_column(kind);
    numbered(
        kind,
        &format!(
            "SELECT COUNT(*) FROM (SELECT {from} FROM booking b JOIN flight f ON f.flight_id = b.flight_id \
             GROUP BY {from} HAVING COUNT(*) > ?) AS above"
        ),
    )
}

impl Database {
    /// Bookings per departure airport, busiest first; the `top` busiest, or all.
    pub async fn departures_leaderboard(&self, top: Option<u64>) -> Result<Vec<AirportBookings>, DbError> {
        let kind = self.kind();
        let sql = leaderboard_sql(kind, top.is_some());
        let limit = top.map(|n| i64::try_from(n).unwrap_or(i64::MAX));
        let error = |e| self.query_error(e);
        let rows: Vec<(i64, i64)> = match &self.pool {
            Pool::MySql(pool) => {
                let mut query = sqlx::query(&sql);
                if let Some(limit) = limit {
                    query = query.bind(limit);
                }
                let rows = query.fetch_all(pool).await.map_err(error)?;
                rows.iter()
                    .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
                    .collect::<Result<_, sqlx::Error>>()
                    .map_err(error)?
            }
            Pool::Postgres(pool) => {
                let mut query = sqlx::query(&sql);
                if let Some(limit) = limit {
                    query = query.bind(limit);
                }
                let rows = query.fetch_all(pool).await.map_err(error)?;
                rows.iter()
                    .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
                    .collect::<Result<_, sqlx::Error>>()
                    .map_err(error)?
            }
        };
        Ok(rows
            .into_iter()
            .map(|(airport_id, bookings)| AirportBookings { airport_id, bookings })
            .collect())
    }

    /// One airport's departing bookings and its rank: 1 + the airports with
    /// more (tied airports share a rank). Two queries.
    pub async fn departures_rank(&self, airport_id: i64) -> Result<(i64, u64), DbError> {
        let kind = self.kind();
        let error = |e| self.query_error(e);
        let (count, above): (i64, i64) = match &self.pool {
            Pool::MySql(pool) => {
                let count: i64 = sqlx::query_scalar(&airport_count_sql(kind))
                    .bind(airport_id)
                    .fetch_one(pool)
                    .await
                    .map_err(error)?;
                let above: i64 = sqlx::query_scalar(&airports_above_sql(kind))
                    .bind(count)
                    .fetch_one(pool)
                    .await
                    .map_err(error)?;
                (count, above)
            }
            Pool::Postgres(pool) => {
                // `flight.from` is a SMALLINT: bind a matching type.
                let id = i16::try_from(airport_id).unwrap_or(i16::MAX);
                let count: i64 = sqlx::query_scalar(&airport_count_sql(kind))
                    .bind(id)
                    .fetch_one(pool)
                    .await
                    .map_err(error)?;
                let above: i64 = sqlx::query_scalar(&airports_above_sql(kind))
                    .bind(count)
                    .fetch_one(pool)
                    .await
                    .map_err(error)?;
                (count, above)
            }
        };
        Ok((count, u64::try_from(above).unwrap_or(0) + 1))
    }

    /// Up to `limit` flights (lowest ids first) with their departure airport:
    /// what the simulated bookings book.
    pub async fn flights_to_book(&self, limit: u64) -> Result<Vec<(i64, i64)>, DbError> {
        let kind = self.kind();
        let sql = numbered(
            kind,
            &format!(
                "SELECT CAST(f.flight_id AS {int}), CAST({from} AS {int}) FROM flight f ORDER BY f.flight_id LIMIT ?",
                int = big_int(kind),
                from = from_column(kind)
            ),
        );
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let error = |e| self.query_error(e);
        match &self.pool {
            Pool::MySql(pool) => sqlx::query_as(&sql).bind(limit).fetch_all(pool).await,
            Pool::Postgres(pool) => sqlx::query_as(&sql).bind(limit).fetch_all(pool).await,
        }
        .map_err(error)
    }

    /// Whether an airport with this id exists.
    pub async fn airport_exists(&self, airport_id: i64) -> Result<bool, DbError> {
        let sql = numbered(self.kind(), "SELECT COUNT(*) FROM airport WHERE airport_id = ?");
        let error = |e| self.query_error(e);
        let found: i64 = match &self.pool {
            Pool::MySql(pool) => sqlx::query_scalar(&sql).bind(airport_id).fetch_one(pool).await,
            Pool::Postgres(pool) => {
                let id = i16::try_from(airport_id).unwrap_or(i16::MAX);
                sqlx::query_scalar(&sql).bind(id).fetch_one(pool).await
            }
        }
        .map_err(error)?;
        Ok(found > 0)
    }

    /// One new booking (no seat) of `passenger_id` on `flight_id`, committed.
    /// The passenger is one the run created (in the ledger), so `clean`
    /// deletes the booking with it.
    pub async fn insert_booking(&self, flight_id: i64, passenger_id: i64) -> Result<(), DbError> {
        let sql = numbered(
            self.kind(),
            "INSERT INTO booking (flight_id, seat, passenger_id, price) VALUES (?, NULL, ?, 99.00)",
        );
        let error = |e| self.query_error(e);
        let flight = i32::try_from(flight_id).unwrap_or(i32::MAX);
        let passenger = i32::try_from(passenger_id).unwrap_or(i32::MAX);
        match &self.pool {
            Pool::MySql(pool) => sqlx::query(&sql)
                .bind(flight)
                .bind(passenger)
                .execute(pool)
                .await
                .map(drop),
            Pool::Postgres(pool) => sqlx::query(&sql)
                .bind(flight)
                .bind(passenger)
                .execute(pool)
                .await
                .map(drop),
        }
        .map_err(error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_leaderboard_query_quotes_from_and_binds_its_limit() {
        let mysql = leaderboard_sql(DatabaseKind::MySql, true);
        assert!(
            mysql.contains("GROUP BY f.`from`") && mysql.ends_with("LIMIT ?"),
            "{mysql}"
        );
        let postgres = leaderboard_sql(DatabaseKind::Postgres, true);
        assert!(
            postgres.contains("GROUP BY f.\"from\"") && postgres.ends_with("LIMIT $1"),
            "{postgres}"
        );
        assert!(!leaderboard_sql(DatabaseKind::MySql, false).contains("LIMIT"));
    }

    #[test]
    fn the_rank_counts_airports_with_more_bookings() {
        assert!(airports_above_sql(DatabaseKind::Postgres).contains("HAVING COUNT(*) > $1"));
        assert!(airport_count_sql(DatabaseKind::MySql).ends_with("WHERE f.`from` = ?"));
    }
}
