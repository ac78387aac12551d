//! The command line: clap derive types only. Doc comments are the help text.
//! Nothing below `config` imports this module; `main` converts it.

use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::config::Overrides;

const TOP_EXAMPLES: &str = "\
Examples:
  workshop-cli check-env                 is everything the workshop needs running?
  workshop-cli seed                      create the schema and load the fixtures
  workshop-cli cache-aside --id 3797     exercise 1: cache-aside on an airport lookup
  workshop-cli write-through             exercise 2: write a passenger through the cache
  workshop-cli --json check-env          the same results as JSON

Configuration comes from flags, then the environment, then .env (see .env.example).";

#[derive(Debug, Parser)]
#[command(
    name = "workshop-cli",
    version,
    about = "Hands-on caching workshop: see cache-aside, write-through and friends work against a real database and Valkey",
    after_help = TOP_EXAMPLES,
    propagate_version = true
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,

    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// Database URL: mysql://, mariadb://, postgres:// or postgresql:// (the password is never shown)
    #[arg(
        long,
        global = true,
        env = "DATABASE_URL",
        hide_env_values = true,
        value_name = "URL"
    )]
    pub database_url: Option<String>,

    /// Valkey URL: redis://, rediss://, valkey:// or valkeys://
    #[arg(long, global = true, env = "VALKEY_URL", hide_env_values = true, value_name = "URL")]
    pub valkey_url: Option<String>,

    /// Cache entry time-to-live in seconds [default: 300]
    #[arg(long, global = true, env = "CACHE_TTL", value_name = "SECONDS")]
    pub ttl: Option<String>,

    /// Prefix of every Valkey key the workshop writes [default: workshop:]
    #[arg(long, global = true, env = "WORKSHOP_KEY_PREFIX", value_name = "PREFIX")]
    pub key_prefix: Option<String>,

    /// Seconds to wait for a server to accept a connection before giving up
    #[arg(long, global = true, value_name = "SECONDS", default_value = "2", value_parser = parse_seconds)]
    pub connect_timeout: Duration,

    /// Print results as JSON on stdout instead of tables
    #[arg(long, global = true)]
    pub json: bool,
}

impl GlobalArgs {
    pub fn overrides(&self) -> Overrides {
        Overrides {
            database_url: self.database_url.clone(),
            valkey_url: self.valkey_url.clone(),
            ttl: self.ttl.clone(),
            key_prefix: self.key_prefix.clone(),
            connect_timeout: Some(self.connect_timeout),
        }
    }
}

fn parse_seconds(raw: &str) -> Result<Duration, String> {
    raw.parse::<f64>()
        .ok()
        .filter(|s| s.is_finite() && *s > 0.0 && *s <= 600.0)
        .map(Duration::from_secs_f64)
        .ok_or_else(|| format!("'{raw}' is not a number of seconds between 0 and 600"))
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check the configuration and every service the workshop needs
    #[command(
        after_help = "Examples:\n  workshop-cli check-env\n  workshop-cli check-env --json\n  DATABASE_URL=postgres://workshop:workshop@127.0.0.1:5432/workshop workshop-cli check-env"
    )]
    CheckEnv,

    /// Create the FlughafenDB-style schema and load generated fixtures
    #[command(
        after_help = "Examples:\n  workshop-cli seed\n  workshop-cli seed --scale 0.1       a small data set, for quick tests\n  workshop-cli seed --reset           drop and rebuild the tables"
    )]
    Seed(SeedArgs),

    /// Exercise 1: cache-aside (lazy loading) and what it buys
    #[command(
        after_help = "Examples:\n  workshop-cli cache-aside --id 3797\n  workshop-cli cache-aside --query busiest-routes --runs 50 --fresh\n  workshop-cli cache-aside --sql 'SELECT * FROM airport WHERE icao = :icao' --param icao=FSFA\n  workshop-cli cache-aside --runs 2000 --concurrency 50 --json"
    )]
    CacheAside(CacheAsideArgs),

    /// Exercise 2: write-through: write the database and the cache together
    #[command(
        after_help = "Examples:\n  workshop-cli write-through\n  workshop-cli write-through --firstname Ada --lastname Lovelace --passportno P123456\n  workshop-cli write-through --update 42 --firstname Grace\n  workshop-cli write-through --runs 20 --cleanup"
    )]
    WriteThrough(WriteThroughArgs),
}

#[derive(Debug, Args)]
pub struct SeedArgs {
    /// Size of the data set; 1.0 loads about 400,000 bookings
    #[arg(long, default_value_t = 1.0)]
    pub scale: f64,

    /// Drop the workshop tables first and load everything again
    #[arg(long)]
    pub reset: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BuiltinQueryName {
    /// One airport by primary key (uses --id)
    Airport,
    /// A passenger's bookings with flight and airports joined (uses --id as passenger_id)
    PassengerBookings,
    /// The ten busiest routes: a join and aggregate over every booking
    BusiestRoutes,
}

#[derive(Debug, Args)]
pub struct CacheAsideArgs {
    /// The id the built-in query looks up
    #[arg(long, default_value_t = 3797, allow_negative_numbers = true)]
    pub id: i64,

    /// Which built-in query to cache
    #[arg(long, value_enum, default_value_t = BuiltinQueryName::Airport, conflicts_with = "sql")]
    pub query: BuiltinQueryName,

    /// Your own read query, with :named parameters (bound, never interpolated)
    #[arg(long, value_name = "SQL")]
    pub sql: Option<String>,

    /// A value for a :named parameter, as name=value (repeatable); name:text=value forces text
    #[arg(long = "param", value_name = "NAME=VALUE", requires = "sql")]
    pub params: Vec<String>,

    /// Timed reads
    #[arg(long, default_value_t = 10)]
    pub runs: u64,

    /// Untimed reads before the timed ones
    #[arg(long, default_value_t = 0)]
    pub warmup: u64,

    /// Delete the cached entry first, so the first timed read is a miss
    #[arg(long)]
    pub fresh: bool,

    /// Tasks reading at the same time, sharing the connection pools
    #[arg(long, default_value_t = 1)]
    pub concurrency: u64,

    /// Skip Valkey: every read goes to the database (a baseline)
    #[arg(long)]
    pub no_cache: bool,

    /// Direct database reads after the cache-aside reads, so the database column has samples
    /// even when every read hits [default: --runs, at most 1000; 0 with --concurrency > 1]
    #[arg(long, value_name = "N")]
    pub baseline: Option<u64>,

    /// Pause between reads in milliseconds (not timed): watch hits and fallbacks as Valkey stops and starts
    #[arg(long, value_name = "MS", default_value_t = 0)]
    pub interval: u64,
}

#[derive(Debug, Args)]
pub struct WriteThroughArgs {
    /// First name of the new passenger (generated when omitted)
    #[arg(long)]
    pub firstname: Option<String>,

    /// Last name of the new passenger (generated when omitted)
    #[arg(long)]
    pub lastname: Option<String>,

    /// Passport number, up to 9 characters (a unique one is generated when omitted)
    #[arg(long)]
    pub passportno: Option<String>,

    /// Update this passenger instead of creating one
    #[arg(long, value_name = "PASSENGER_ID", allow_negative_numbers = true)]
    pub update: Option<i64>,

    /// Writes to time (each creates or updates one passenger)
    #[arg(long, default_value_t = 1)]
    pub runs: u64,

    /// Remove the passengers and cache keys this run created
    #[arg(long)]
    pub cleanup: bool,
}

impl From<BuiltinQueryName> for crate::exercises::queries::BuiltinQuery {
    fn from(name: BuiltinQueryName) -> Self {
        use crate::exercises::queries::BuiltinQuery;
        match name {
            BuiltinQueryName::Airport => BuiltinQuery::Airport,
            BuiltinQueryName::PassengerBookings => BuiltinQuery::PassengerBookings,
            BuiltinQueryName::BusiestRoutes => BuiltinQuery::BusiestRoutes,
        }
    }
}

impl From<CacheAsideArgs> for crate::exercises::cache_aside::CacheAsideOptions {
    fn from(args: CacheAsideArgs) -> Self {
        use crate::exercises::cache_aside::QueryChoice;
        let query = match args.sql {
            Some(sql) => QueryChoice::Custom {
                sql,
                params: args.params,
            },
            None => QueryChoice::Builtin {
                query: args.query.into(),
                id: args.id,
            },
        };
        crate::exercises::cache_aside::CacheAsideOptions {
            query,
            runs: args.runs,
            warmup: args.warmup,
            fresh: args.fresh,
            concurrency: args.concurrency,
            no_cache: args.no_cache,
            baseline: args.baseline,
            interval: std::time::Duration::from_millis(args.interval),
        }
    }
}

impl From<WriteThroughArgs> for crate::exercises::write_through::WriteThroughOptions {
    fn from(args: WriteThroughArgs) -> Self {
        crate::exercises::write_through::WriteThroughOptions {
            firstname: args.firstname,
            lastname: args.lastname,
            passportno: args.passportno,
            update: args.update,
            runs: args.runs,
            cleanup: args.cleanup,
        }
    }
}
