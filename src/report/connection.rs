//! The one renderer of an exercise's connection set-up: what connecting and
//! warming up took, shown apart from every timing below it.

use std::time::Duration;

use super::table::ms;
use super::Output;
use crate::exercises::services::ConnectionSetup;

/// The heading every connection line stands under.
pub const HEADING: &str = "Connection set-up (not part of any timing below)";

/// `database connect 2.1 ms · Valkey connect 0.4 ms · {steps} · pool warm-up
/// 3.0 ms`: the parts the run had, with the exercise's own timed set-up steps
/// (a subscription, the lock connection) before the warm-up. Exercises append
/// what follows the warm-up (untimed reads, a fleet's start) themselves.
pub fn line(setup: &ConnectionSetup, steps: &[(&str, Option<Duration>)]) -> String {
    let mut parts = Vec::new();
    if let Some(database) = setup.database_connect {
        parts.push(format!("database connect {} ms", ms(database)));
    }
    if let Some(valkey) = setup.valkey_connect {
        parts.push(format!("Valkey connect {} ms", ms(valkey)));
    }
    for (name, took) in steps {
        if let Some(took) = took {
            parts.push(format!("{name} {} ms", ms(*took)));
        }
    }
    if let Some(warm_up) = setup.pool_warm_up {
        parts.push(format!("pool warm-up {} ms", ms(warm_up)));
    }
    parts.join(" · ")
}

/// The heading and the line.
pub fn show(output: &Output, line: &str) {
    output.heading(HEADING);
    output.text(line);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_line_names_only_what_the_run_had_with_its_own_steps_before_the_warm_up() {
        let setup = ConnectionSetup {
            database_connect: Some(Duration::from_micros(2100)),
            valkey_connect: Some(Duration::from_micros(400)),
            pool_warm_up: Some(Duration::from_millis(3)),
        };
        assert_eq!(
            line(
                &setup,
                &[
                    ("subscribe", Some(Duration::from_micros(250))),
                    ("lock connection", None)
                ]
            ),
            "database connect 2.100 ms · Valkey connect 0.400 ms · subscribe 0.250 ms · pool warm-up 3.000 ms"
        );
        let without = ConnectionSetup {
            database_connect: None,
            valkey_connect: Some(Duration::from_micros(400)),
            pool_warm_up: None,
        };
        assert_eq!(line(&without, &[]), "Valkey connect 0.400 ms");
    }
}
