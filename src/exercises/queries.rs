//! The workshop's built-in read queries, written against the FlughafenDB
//! schema so they also run on a real FlughafenDB import.

use crate::config::DatabaseKind;
use crate::db::dialect::quote_ident;
use crate::db::{NamedQuery, SqlValue};

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
