//! The workshop's built-in read queries, written against the FlughafenDB
//! schema so they also run on a real FlughafenDB import.

use crate::config::DatabaseKind;
use crate::db::dialect::quote_ident;
use std::collections::BTreeMap;

use crate::db::{read_only, NamedQuery, SqlValue};
use crate::error::{Result, WorkshopError};

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum BuiltinQuery {
    /// One airport by primary key: the cheapest query there is.
    Airport,
    /// A passenger's bookings with flights and airports joined.
    PassengerBookings,
    /// The ten busiest routes: a join and aggregate over every booking.
    BusiestRoutes,
}

impl BuiltinQuery {
    pub fn name(self) -> &'static str {
        match self {
            BuiltinQuery::Airport => "airport",
            BuiltinQuery::PassengerBookings => "passenger-bookings",
            BuiltinQuery::BusiestRoutes => "busiest-routes",
        }
    }

    /// Whether `--id` is a parameter of this query.
    pub fn uses_id(self) -> bool {
        !matches!(self, BuiltinQuery::BusiestRoutes)
    }

    /// The query in the dialect of `kind` (`from` and `to` are reserved words).
    pub fn named_query(self, kind: DatabaseKind, id: i64) -> NamedQuery {
        let from = quote_ident(kind, "from");
        let to = quote_ident(kind, "to");
        match self {
            BuiltinQuery::Airport => {
                NamedQuery::new("SELECT airport_id, iata, icao, name FROM airport WHERE airport_id = :id")
                    .param("id", SqlValue::Int(id))
            }
            BuiltinQuery::PassengerBookings => NamedQuery::new(format!(
                "SELECT b.booking_id, f.flightno, dep.icao AS from_icao, arr.icao AS to_icao, \
                 f.departure, b.seat, b.price \
                 FROM booking b \
                 JOIN flight f ON f.flight_id = b.flight_id \
                 JOIN airport dep ON dep.airport_id = f.{from} \
                 JOIN airport arr ON arr.airport_id = f.{to} \
                 WHERE b.passenger_id = :id \
                 ORDER BY f.departure, b.booking_id"
            ))
            .param("id", SqlValue::Int(id)),
            // Bookings are summed per flight first, then flights per route:
            // one pass over booking instead of a join per booking row (about
            // four times faster on MariaDB, the same on PostgreSQL).
            BuiltinQuery::BusiestRoutes => NamedQuery::new(format!(
                "SELECT f.{from} AS from_airport, f.{to} AS to_airport, \
                 SUM(per_flight.bookings) AS bookings, SUM(per_flight.revenue) AS revenue \
                 FROM (SELECT flight_id, COUNT(*) AS bookings, SUM(price) AS revenue \
                       FROM booking GROUP BY flight_id) per_flight \
                 JOIN flight f ON f.flight_id = per_flight.flight_id \
                 GROUP BY f.{from}, f.{to} \
                 ORDER BY bookings DESC, from_airport, to_airport \
                 LIMIT 10"
            )),
        }
    }
}

/// The query an exercise caches: a built-in one, or the learner's own
/// `--sql` (cache-aside and stampede share it).
#[derive(Debug, Clone)]
pub enum QueryChoice {
    Builtin {
        query: BuiltinQuery,
        id: i64,
    },
    /// `--sql` with `--param name=value` pairs as typed.
    Custom {
        sql: String,
        params: Vec<String>,
    },
}

impl QueryChoice {
    /// Checks what can be checked before connecting: a built-in query's `--id`.
    pub fn validate(&self) -> Result<()> {
        if let QueryChoice::Builtin { query, id } = self {
            if query.uses_id() && *id < 1 {
                return Err(WorkshopError::invalid(format!(
                    "--id must be a positive whole number (got {id})"
                )));
            }
        }
        Ok(())
    }

    /// The query's name ("custom" for `--sql`) and the query with its
    /// parameters, in the dialect of `kind`.
    pub fn build(&self, kind: DatabaseKind) -> Result<(String, NamedQuery)> {
        match self {
            QueryChoice::Builtin { query, id } => Ok((query.name().to_string(), query.named_query(kind, *id))),
            QueryChoice::Custom { sql, params } => {
                if sql.trim().is_empty() {
                    return Err(WorkshopError::invalid(
                        "--sql is empty; give a read query such as 'SELECT * FROM airport WHERE airport_id = :id'",
                    ));
                }
                // Refused before anything runs; the read-only transaction is the second guard.
                read_only::check(sql, kind).map_err(|not_a_read| {
                    WorkshopError::invalid(format!(
                        "--sql is not a read: {}; workshop-cli only measures reads and never changes data, give a {} query",
                        not_a_read.reason(),
                        read_only::READS
                    ))
                })?;
                let mut query = NamedQuery::new(sql.clone());
                query.params = parse_params(params)?;
                query.read_only = true;
                Ok(("custom".to_string(), query))
            }
        }
    }
}

/// Parses `--param name=value` (or `name:text=value` to force text).
pub fn parse_params(raw: &[String]) -> Result<BTreeMap<String, SqlValue>> {
    let mut params = BTreeMap::new();
    for item in raw {
        let Some((name, value)) = item.split_once('=') else {
            return Err(WorkshopError::invalid(format!(
                "--param '{item}' needs the form name=value"
            )));
        };
        let (name, forced_text) = match name.strip_suffix(":text") {
            Some(bare) => (bare, true),
            None => (name, false),
        };
        let valid_name = name.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid_name {
            return Err(WorkshopError::invalid(format!(
                "--param name '{name}' may use only ASCII letters, digits and _ (not a digit first); rename it in --param and in the SQL"
            )));
        }
        let value = if forced_text {
            SqlValue::Text(value.to_string())
        } else {
            SqlValue::infer(value)
        };
        if params.insert(name.to_string(), value).is_some() {
            return Err(WorkshopError::invalid(format!("--param {name} is given twice")));
        }
    }
    Ok(params)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_builtin_query_binds_on_both_dialects() {
        for query in [
            BuiltinQuery::Airport,
            BuiltinQuery::PassengerBookings,
            BuiltinQuery::BusiestRoutes,
        ] {
            for kind in [DatabaseKind::MySql, DatabaseKind::Postgres] {
                let statement = query.named_query(kind, 3797).to_statement(kind).unwrap();
                assert_eq!(statement.args.len(), usize::from(query.uses_id()), "{query:?}");
            }
        }
    }

    #[test]
    fn reserved_column_names_are_quoted_per_dialect() {
        let mysql = BuiltinQuery::BusiestRoutes.named_query(DatabaseKind::MySql, 0);
        assert!(mysql.sql.contains("f.`from`"));
        let pg = BuiltinQuery::BusiestRoutes.named_query(DatabaseKind::Postgres, 0);
        assert!(pg.sql.contains("f.\"from\""));
    }
}
