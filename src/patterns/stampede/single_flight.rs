//! Single flight: one load per key per process; the other callers in the
//! same process await its result.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::OnceCell;

use super::{served, Lookup, Path, Served, StampedeCache};
use crate::db::{DbError, ResultSet};

/// In-process single flight: while one caller loads a key, later callers for
/// the same key await that load instead of starting their own.
///
/// A flight is forgotten as soon as it lands, so a later miss starts a new
/// one (whose loader re-checks the cache first).
pub struct SingleFlight<T> {
    flights: Mutex<HashMap<String, Arc<OnceCell<T>>>>,
}

impl<T> Default for SingleFlight<T> {
    fn default() -> Self {
        SingleFlight {
            flights: Mutex::new(HashMap::new()),
        }
    }
}

impl<T: Clone> SingleFlight<T> {
    /// Joins the flight for `key`, or starts it with `load`. Returns the value
    /// and whether this caller was the one that ran `load`.
    pub async fn run<E, F, Fut>(&self, key: &str, load: F) -> Result<(T, bool), E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let cell = {
            let mut flights = self.flights.lock().unwrap_or_else(PoisonError::into_inner);
            Arc::clone(flights.entry(key.to_string()).or_default())
        };
        let mut led = false;
        let result = cell
            .get_or_try_init(|| {
                led = true;
                load()
            })
            .await
            .cloned();
        let mut flights = self.flights.lock().unwrap_or_else(PoisonError::into_inner);
        if flights.get(key).is_some_and(|current| Arc::ptr_eq(current, &cell)) {
            flights.remove(key);
        }
        result.map(|value| (value, led))
    }

    /// Flights in the air (0 between bursts).
    pub fn in_flight(&self) -> usize {
        self.flights.lock().unwrap_or_else(PoisonError::into_inner).len()
    }
}

/// The result of one single flight, shared by everyone who awaited it.
#[derive(Clone)]
pub(super) struct Flight {
    rows: Arc<ResultSet>,
    /// The flight ran the query (rather than finding the cache filled).
    loaded: bool,
    cache_unavailable: bool,
}

impl StampedeCache {
    pub(super) async fn single_flight(&self) -> Result<Served, DbError> {
        let mut unavailable = self.valkey.is_none();
        if let Some(valkey) = &self.valkey {
            match self.lookup(valkey).await {
                Lookup::Hit(rows) => return Ok(served(Path::Hit, rows)),
                Lookup::Miss => {}
                Lookup::Failed => unavailable = true,
            }
        }
        let (flight, led) = self
            .flights
            .run(&self.keys.value, || async {
                // Re-check: an earlier flight may have filled the cache since our lookup.
                if let Some(valkey) = &self.valkey {
                    if let Lookup::Hit(rows) = self.lookup(valkey).await {
                        return Ok(Flight {
                            rows,
                            loaded: false,
                            cache_unavailable: false,
                        });
                    }
                }
                let rows = Arc::new(self.loader.load().await?.0);
                let stored = match &self.valkey {
                    Some(valkey) => self.store(valkey, &rows).await,
                    None => false,
                };
                Ok::<_, DbError>(Flight {
                    rows,
                    loaded: true,
                    cache_unavailable: !stored,
                })
            })
            .await?;
        let path = match (led, flight.loaded) {
            (true, true) => Path::Loaded,
            (true, false) => Path::Hit,
            (false, _) => Path::Waited,
        };
        Ok(Served {
            cache_unavailable: unavailable || (led && flight.cache_unavailable),
            ..served(path, flight.rows)
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::time::Duration;

    use super::*;

    // Paused time: the 20 ms load takes no wall-clock time, and the callers
    // still overlap because the clock only advances when every task waits.
    #[tokio::test(start_paused = true)]
    async fn a_single_flight_runs_one_load_for_many_callers() {
        let flights = Arc::new(SingleFlight::<u64>::default());
        let loads = Arc::new(AtomicU64::new(0));
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..50 {
            let flights = Arc::clone(&flights);
            let loads = Arc::clone(&loads);
            tasks.spawn(async move {
                flights
                    .run("k", || async {
                        loads.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        Ok::<_, ()>(42)
                    })
                    .await
            });
        }
        let mut leaders = 0;
        while let Some(joined) = tasks.join_next().await {
            let (value, led) = joined.unwrap().unwrap();
            assert_eq!(value, 42);
            leaders += usize::from(led);
        }
        assert_eq!(loads.load(Ordering::SeqCst), 1);
        assert_eq!(leaders, 1);
        assert_eq!(flights.in_flight(), 0, "a landed flight is forgotten");
    }

    #[tokio::test]
    async fn a_landed_flight_does_not_answer_the_next_caller() {
        let flights = SingleFlight::<u64>::default();
        let first = flights.run("k", || async { Ok::<_, ()>(1) }).await.unwrap();
        let second = flights.run("k", || async { Ok::<_, ()>(2) }).await.unwrap();
        assert_eq!((first, second), ((1, true), (2, true)));
    }
}
