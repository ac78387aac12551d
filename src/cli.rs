//! The command line: clap derive types only. Doc comments are the help text.
//! Nothing below `config` imports this module; `main` converts it.

use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::config::Overrides;

const TOP_EXAMPLES: &str = "\
Examples:
  workshop-cli                           on a terminal: the guided workshop
  workshop-cli exercises                 the exercises and your progress
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

    /// Every cache write lives --ttl ± PCT % (uniform), so keys written together do not expire together [default: 0]
    #[arg(long, global = true, env = "CACHE_TTL_JITTER", value_name = "PCT")]
    pub ttl_jitter: Option<String>,

    /// Prefix of every Valkey key the workshop writes [default: workshop:]
    #[arg(long, global = true, env = "WORKSHOP_KEY_PREFIX", value_name = "PREFIX")]
    pub key_prefix: Option<String>,

    /// Seconds to wait for a server to accept a connection before giving up
    #[arg(long, global = true, value_name = "SECONDS", default_value = "2", value_parser = parse_seconds)]
    pub connect_timeout: Duration,

    /// Seconds any one database statement may run before the server stops it (0: no limit)
    #[arg(long, global = true, env = "WORKSHOP_QUERY_TIMEOUT", value_name = "SECONDS", default_value = "30", value_parser = parse_query_timeout)]
    pub query_timeout: Duration,
    /// Milliseconds one Valkey command may wait for an answer before the read falls back to the database [default: 250]
    #[arg(long, global = true, env = "WORKSHOP_CACHE_TIMEOUT", value_name = "MS")]
    pub cache_timeout: Option<String>,

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
            ttl_jitter: self.ttl_jitter.clone(),
            key_prefix: self.key_prefix.clone(),
            connect_timeout: Some(self.connect_timeout),
            query_timeout: Some((!self.query_timeout.is_zero()).then_some(self.query_timeout)),
            cache_timeout: self.cache_timeout.clone(),
        }
    }
}

/// Every count (`--runs`, `--requests`, `--writes`, ...) is read here, so a
/// negative one is the same usage error (exit 2) in every command; the
/// exercise then checks the range (exit 6). `-5` is taken as a value, not a flag.
fn parse_count(raw: &str) -> Result<u64, String> {
    raw.trim()
        .parse::<u64>()
        .map_err(|_| format!("'{raw}' is not a count: give a whole number, 0 or more"))
}

fn parse_seconds(raw: &str) -> Result<Duration, String> {
    raw.parse::<f64>()
        .ok()
        .filter(|s| s.is_finite() && *s > 0.0 && *s <= 600.0)
        .map(Duration::from_secs_f64)
        .ok_or_else(|| format!("'{raw}' is not a number of seconds between 0 and 600"))
}

/// `0` (no limit) up to a day, fractions allowed.
fn parse_query_timeout(raw: &str) -> Result<Duration, String> {
    raw.trim()
        .parse::<f64>()
        .ok()
        .filter(|s| s.is_finite() && (0.0..=86_400.0).contains(s))
        .map(Duration::from_secs_f64)
        .ok_or_else(|| format!("'{raw}' is not a number of seconds from 0 (no limit) to 86400"))
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check the configuration and every service the workshop needs
    #[command(
        after_help = "Examples:\n  workshop-cli check-env\n  workshop-cli check-env --json\n  DATABASE_URL=postgres://workshop:workshop@127.0.0.1:5432/workshop workshop-cli check-env"
    )]
    CheckEnv,

    /// Undo what the workshop wrote: delete the rows it created, restore the rows it updated, delete its keys
    #[command(
        after_help = "Examples:\n  workshop-cli clean --dry-run     what would be removed\n  workshop-cli clean\n  workshop-cli clean --json\n  workshop-cli clean --force       also drop write-behind writes not yet flushed"
    )]
    Clean(CleanArgs),

    /// Create the FlughafenDB-style schema and load generated fixtures
    #[command(
        after_help = "Examples:\n  workshop-cli seed\n  workshop-cli seed --scale 0.1       a small data set, for quick tests\n  workshop-cli seed --reset           drop and rebuild the tables"
    )]
    Seed(SeedArgs),

    /// Exercise 1: cache-aside (lazy loading) and what it buys
    #[command(
        after_help = "Examples:\n  workshop-cli cache-aside --id 3797\n  workshop-cli cache-aside --query busiest-routes --runs 50 --fresh\n  workshop-cli cache-aside --sql 'SELECT * FROM airport WHERE icao = :icao' --param icao=FSFA\n  workshop-cli cache-aside --runs 2000 --concurrency 50 --json\n  workshop-cli cache-aside --runs 200000 --concurrency 50 --connections 50   one connection per task"
    )]
    CacheAside(CacheAsideArgs),

    /// Exercise 2: write-through: write the database and the cache together
    #[command(
        after_help = "Examples:\n  workshop-cli write-through\n  workshop-cli write-through --firstname Ada --lastname Lovelace --passportno P123456\n  workshop-cli write-through --update 42 --firstname Grace\n  workshop-cli write-through --runs 20 --cleanup"
    )]
    WriteThrough(WriteThroughArgs),

    /// Exercise 3: cache statistics: hit rates and latency per layer, Valkey's INFO, Prometheus, eviction
    #[command(
        after_help = "Examples:\n  workshop-cli stats                        20,000 skewed requests: L1, Valkey, database\n  workshop-cli stats --no-l1 --skew 0       uniform keys, Valkey only\n  workshop-cli stats --duration 30 --rate 2000 --ttl 5 --fresh   cold start and expiries over time\n  workshop-cli stats --format prometheus    the same numbers as Prometheus metrics\n  workshop-cli stats --maxmemory 2mb --policy allkeys-lru,allkeys-lfu   eviction policies compared\n  workshop-cli stats --maxmemory 2mb --private-valkey   the same on a valkey-server of its own\n  workshop-cli stats --read-ratio 80 --write-mode invalidate   20 % writes; hit rate and stale reads\n  workshop-cli stats --duration 20 --rate 2000 --out run.json   save the per-second series; `workshop-cli plot run.json`"
    )]
    Stats(StatsArgs),

    /// Exercise 4: a two-level cache (in-process L1, Valkey L2), warming, and invalidation across processes
    #[command(
        after_help = "Examples:\n  workshop-cli multi-level                            skewed reads: L1, L2, database side by side\n  workshop-cli multi-level --id 42 --requests 5       database, then L1 (run again: L2 first)\n  workshop-cli multi-level --keys 2000 --l1-capacity 100\n  workshop-cli multi-level --warm 100                 preload the 100 most requested products\n  workshop-cli multi-level --listen --id 42           terminal 1: watch product 42\n  workshop-cli multi-level --update 42 --price 24.99  terminal 2: terminal 1 sees it at once\n  workshop-cli multi-level --listen --id 42 --invalidation off --l1-ttl 10"
    )]
    MultiLevel(MultiLevelArgs),

    /// Exercise 5: write-behind: acknowledge writes once Valkey has them, store them later in batches
    #[command(
        after_help = "Examples:\n  workshop-cli write-behind                               1000 writes, next to write-through\n  workshop-cli write-behind --writes 5000 --batch 500 --flush-interval 20\n  workshop-cli write-behind --produce-only --writes 500   queue them; the database waits\n  workshop-cli write-behind --flush-only --batch 20       store the queue (kill it, run again)\n  workshop-cli write-behind --flush-only --duration 60    flush new writes for a minute"
    )]
    WriteBehind(WriteBehindArgs),

    /// Exercise 6: cache stampede: many requests for one cold key, unprotected, with single flight, a Valkey lock, XFetch
    #[command(
        after_help = "Examples:\n  workshop-cli stampede                                     every mode on one cold key\n  workshop-cli stampede --mode lock --processes 4           one query for the whole fleet\n  workshop-cli stampede --mode single-flight --processes 4  one query per process\n  workshop-cli stampede --mode single-flight --concurrency 1000 --rounds 5\n  workshop-cli stampede --mode lock --lock-wait-ms 0        waiters fall back at once\n  workshop-cli stampede --time-budget 60                    a slow query: sizes fit 60 s\n  workshop-cli stampede --mode xfetch --beta 2              a hot key expiring under traffic\n  workshop-cli stampede --query airport --id 3797 --json"
    )]
    Stampede(StampedeArgs),

    /// Exercise 14: a Valkey Cluster: keys per primary, hash tags, CROSSSLOT, a failover under load
    #[command(
        after_help = "Examples:\n  just up-cluster                                        start a local cluster first\n  VALKEY_URL=redis://127.0.0.1:7001 workshop-cli cluster\n  workshop-cli cluster --no-failover                     the key layout and hash tags only\n  workshop-cli cluster --concurrency 50 --duration 30 --freeze 8\n  workshop-cli cluster --json"
    )]
    Cluster(ClusterArgs),
    /// Exercise 8: caching a slow external API: calls avoided, latency, stale-if-error, stampede modes
    #[command(
        after_help = "Examples:\n  workshop-cli api-cache                                  built-in upstream, 250..750 ms\n  workshop-cli api-cache --latency 50..150 --failure-rate 0.2 --stale-if-error 60\n  workshop-cli api-cache --mode lock --stampede 100       one upstream call for 100 requests\n  workshop-cli api-cache --upstream http://127.0.0.1:9000  a real API: GET /weather/{country}/{city}\n  workshop-cli api-cache --upstream 'https://api.example.com/w?q={city},{country}'\n  workshop-cli api-cache --json"
    )]
    ApiCache(ApiCacheArgs),

    /// Exercise 9: a leaderboard: the busiest airports as a sorted set versus the SQL aggregate
    #[command(
        after_help = "Examples:\n  workshop-cli leaderboard                         top 10, 1000 new bookings, both sides timed\n  workshop-cli leaderboard --top 20 --airport 3797  one airport's rank on both sides\n  workshop-cli leaderboard --bookings 0 --runs 100  reads only\n  workshop-cli leaderboard --keep                   keep bookings and key (`clean` removes them)\n  workshop-cli leaderboard --json"
    )]
    Leaderboard(LeaderboardArgs),

    /// Exercise 10: a session store: a hash with a sliding expiry versus a database table
    #[command(
        after_help = "Examples:\n  workshop-cli session                          1000 sessions each side, a 5 s session seen expiring\n  workshop-cli session --session-ttl 10 --interval 0.5\n  workshop-cli session --sessions 5000 --json\n  DATABASE_URL=postgres://workshop:workshop@127.0.0.1:5432/workshop workshop-cli session"
    )]
    Session(SessionArgs),

    /// Exercise 11: rate limiting: fixed window, sliding log and token bucket in Valkey, measured
    #[command(
        after_help = "Examples:\n  workshop-cli rate-limit                                   all three, 10 clients × 30/s against 100/s\n  workshop-cli rate-limit --limiter token-bucket --limit 100/s --duration 3\n  workshop-cli rate-limit --limiter fixed-window --clients 50 --rate 10\n  workshop-cli rate-limit --limit 6000/min --duration 10\n  workshop-cli rate-limit --limiter token-bucket --burst 50 --json\n  workshop-cli rate-limit --processes 4 --clients 5   the limit holds across 4 processes\n  workshop-cli rate-limit --out limits.json && workshop-cli plot limits.json"
    )]
    RateLimit(RateLimitArgs),

    /// Exercise 12: TTL, jitter and expiry storms: keys cached together expire together, unless jittered
    #[command(
        after_help = "Examples:\n  workshop-cli ttl                                    500 keys, ttl 3 s: together, then ± 50 %\n  workshop-cli ttl --ttl 5 --ttl-jitter 20 --duration 16\n  workshop-cli ttl --keys 2000 --rate 8000 --clients 16\n  workshop-cli ttl --json\n  workshop-cli --ttl-jitter 20 stats                  the same jitter on every cache write of stats"
    )]
    Ttl(TtlArgs),

    /// Exercise 13: client-side caching with CLIENT TRACKING: Valkey invalidates a reader's L1 over RESP3
    #[command(
        after_help = "Examples:\n  workshop-cli tracking                               default mode, BCAST and pub/sub side by side\n  workshop-cli tracking --mode bcast --updates 50\n  workshop-cli tracking --mode pubsub                 exercise 4's way, for comparison\n  workshop-cli tracking --json"
    )]
    Tracking(TrackingArgs),

    /// Exercise 7: the product catalogue as an HTTP service over L1 → Valkey → database
    #[command(
        after_help = "Examples:\n  workshop-cli serve                                  http://127.0.0.1:8080 (open it in a browser: the live dashboard)\n  curl -i http://127.0.0.1:8080/products/42            X-Cache: DB, then L2 or L1\n  curl -X PUT -d '{\"price\": \"24.99\"}' http://127.0.0.1:8080/products/42\n  curl -X PUT -d '{\"name\": \"Kettle\", \"in_stock\": false}' http://127.0.0.1:8080/products/42\n  workshop-cli serve --listen 127.0.0.1:8081 --log info   a second server; watch its requests\n  workshop-cli serve --invalidation off               PUTs on another server leave this L1 stale\n  workshop-cli serve --l1-capacity 0                  every read goes to Valkey\n  workshop-cli serve --listen 0.0.0.0:8080 --public   reachable from other machines"
    )]
    Serve(ServeArgs),

    /// Draw saved runs (`--out run.json`): req/s, hit rate, p50 and p99 per second, in the terminal or as SVG
    #[command(
        after_help = "Examples:\n  workshop-cli stats --duration 20 --rate 2000 --out a.json\n  workshop-cli stats --duration 20 --rate 2000 --read-ratio 80 --write-mode invalidate --out b.json\n  workshop-cli plot a.json                       line charts in the terminal\n  workshop-cli plot a.json b.json                two runs compared, same scales\n  workshop-cli plot a.json b.json --svg ab.svg   one SVG, one line per run, with a legend\n  NO_COLOR=1 workshop-cli plot a.json b.json     one chart per run instead of colours"
    )]
    Plot(PlotArgs),

    /// Load a catalogue service (`serve`): GETs and PUTs on /products/{id}, latency by X-Cache layer, per second
    #[command(
        after_help = "Examples:\n  workshop-cli load                                   20 s on http://127.0.0.1:8080, 80 % reads\n  workshop-cli load --concurrency 50 --duration 10 --read-ratio 100\n  workshop-cli load --rate 500 --skew 1.2 --ids 1..1000\n  workshop-cli load --json --out run.json             the time series for later"
    )]
    Load(LoadArgs),

    /// Grade your own caching code by what the database and Valkey saw it do
    #[command(
        after_help = "Examples:\n  workshop-cli grade script --exercise cache-aside -- python3 my_cache_aside.py\n  workshop-cli grade script --exercise write-through -- ./write_through.sh\n  workshop-cli grade service -- python3 app.py --port {port}     the grader starts 2 instances\n  workshop-cli grade service --url http://127.0.0.1:8000 --url http://127.0.0.1:8001\n  workshop-cli grade script --exercise cache-aside --json -- node cache_aside.js\n\nThe program gets DATABASE_URL, VALKEY_URL and DB_ENGINE/DB_HOST/DB_PORT/DB_USER/\nDB_PASSWORD/DB_NAME/CACHE_HOST/CACHE_PORT/CACHE_TTL pointing at a database and a\nValkey the grader creates for the run (see the README, \"Grading your own code\").\nExit 0 when every required check passed, 9 when one failed."
    )]
    Grade(GradeArgs),

    /// List the workshop's exercises with your progress, show a briefing, or reset progress
    #[command(
        after_help = "Examples:\n  workshop-cli exercises\n  workshop-cli exercises show 1\n  workshop-cli exercises reset      clear all progress\n  workshop-cli exercises reset 2    clear exercise 2 only\n\nRun `workshop-cli` with no arguments on a terminal for the guided workshop."
    )]
    Exercises(ExercisesArgs),

    /// Print shell completions for bash, zsh, fish or powershell
    #[command(
        after_help = "Examples:\n  workshop-cli completions bash > ~/.local/share/bash-completion/completions/workshop-cli\n  workshop-cli completions zsh > ~/.zfunc/_workshop-cli\n  workshop-cli completions fish > ~/.config/fish/completions/workshop-cli.fish"
    )]
    Completions {
        /// The shell to generate completions for
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

#[derive(Debug, Args)]
pub struct ExercisesArgs {
    #[command(subcommand)]
    pub action: Option<ExercisesAction>,
}

#[derive(Debug, Subcommand)]
pub enum ExercisesAction {
    /// Print an exercise's briefing
    Show {
        /// Exercise number or id, e.g. 1 or cache-aside
        exercise: String,
    },
    /// Clear progress: one exercise, or all of them
    Reset {
        /// Exercise number or id; all exercises when omitted
        exercise: Option<String>,
    },
}

#[derive(Debug, Args)]
pub struct SeedArgs {
    /// Size of the data set; 1.0 loads 250,000 bookings
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
    #[command(flatten)]
    pub query: QueryArgs,

    /// Timed reads
    #[arg(long, value_parser = parse_count, allow_negative_numbers = true, default_value_t = 10)]
    pub runs: u64,

    /// Untimed reads before the timed ones
    #[arg(long, value_parser = parse_count, allow_negative_numbers = true, default_value_t = 0)]
    pub warmup: u64,

    /// Delete the cached entry first, so the first timed read is a miss
    #[arg(long)]
    pub fresh: bool,

    /// Tasks reading at the same time, sharing the connection pools
    #[arg(long, value_parser = parse_count, allow_negative_numbers = true, default_value_t = 1)]
    pub concurrency: u64,

    /// Skip Valkey: every read goes to the database (a baseline)
    #[arg(long)]
    pub no_cache: bool,

    /// Direct database reads after the cache-aside reads, so the database column has samples
    /// even when every read hits [default: --runs, at most 1000; 0 with --concurrency > 1]
    #[arg(long, value_parser = parse_count, allow_negative_numbers = true, value_name = "N")]
    pub baseline: Option<u64>,

    /// Pause between reads in milliseconds (not timed): watch hits and fallbacks as Valkey stops and starts
    #[arg(long, value_parser = parse_count, allow_negative_numbers = true, value_name = "MS", default_value_t = 0)]
    pub interval: u64,

    /// Valkey connections the tasks share, round robin (1: every task pipelines on one connection;
    /// --concurrency N --connections N: one connection per task, like redis-benchmark -c N)
    #[arg(long, value_parser = parse_count, allow_negative_numbers = true, value_name = "N", default_value_t = 1, conflicts_with = "no_cache")]
    pub connections: u64,
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
    #[arg(long, value_parser = parse_count, allow_negative_numbers = true, default_value_t = 1)]
    pub runs: u64,

    /// Remove the passengers and cache keys this run created
    #[arg(long)]
    pub cleanup: bool,
}

/// The query a command caches: a built-in one, or your own read with its
/// parameters. One struct, flattened into `cache-aside` and `stampede`.
#[derive(Debug, Args)]
pub struct QueryArgs {
    /// Which built-in query to cache
    #[arg(long, value_enum, default_value_t = BuiltinQueryName::Airport, conflicts_with = "sql")]
    pub query: BuiltinQueryName,

    /// The id the built-in query looks up (airport, passenger-bookings)
    #[arg(long, default_value_t = 3797, allow_negative_numbers = true)]
    pub id: i64,

    /// Your own read query, with :named parameters (bound, never interpolated)
    #[arg(long, value_name = "SQL")]
    pub sql: Option<String>,

    /// A value for a :named parameter, as name=value (repeatable); name:text=value forces text
    #[arg(long = "param", value_name = "NAME=VALUE", requires = "sql")]
    pub params: Vec<String>,
}

impl From<QueryArgs> for crate::exercises::queries::QueryChoice {
    fn from(args: QueryArgs) -> Self {
        use crate::exercises::queries::QueryChoice;
        match args.sql {
            Some(sql) => QueryChoice::Custom {
                sql,
                params: args.params,
            },
            None => QueryChoice::Builtin {
                query: args.query.into(),
                id: args.id,
            },
        }
    }
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
        let query = crate::exercises::queries::QueryChoice::from(args.query);
        crate::exercises::cache_aside::CacheAsideOptions {
            query,
            runs: args.runs,
            warmup: args.warmup,
            fresh: args.fresh,
            concurrency: args.concurrency,
            no_cache: args.no_cache,
            baseline: args.baseline,
            interval: std::time::Duration::from_millis(args.interval),
            connections: args.connections,
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

/// On or off, for switches such as `--invalidation`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Switch {
    On,
    Off,
}

#[derive(Debug, Args)]
pub struct MultiLevelArgs {
    /// Read this one product (with --listen: watch it)
    #[arg(long, value_name = "PRODUCT_ID", allow_negative_numbers = true, conflicts_with_all = ["keys", "skew"])]
    pub id: Option<i64>,

    /// Timed reads [default: 10 with --id, else 10000]
    #[arg(long, value_parser = parse_count, allow_negative_numbers = true, value_name = "N")]
    pub requests: Option<u64>,

    /// The workload reads product ids 1..=K [default: 1000, at most the catalogue]
    #[arg(long, value_parser = parse_count, allow_negative_numbers = true, value_name = "K")]
    pub keys: Option<u64>,

    /// Zipf skew of the workload, 0 to 5: 0 is uniform, 1 is typical, id 1 is the most requested [default: 1]
    #[arg(long, value_name = "S", allow_negative_numbers = true)]
    pub skew: Option<f64>,

    /// Tasks reading at the same time, sharing L1 and the connection pools
    #[arg(long, value_parser = parse_count, allow_negative_numbers = true, value_name = "N", default_value_t = 1)]
    pub concurrency: u64,

    /// L1 size in entries; beyond it moka evicts the least valuable
    #[arg(long, value_parser = parse_count, allow_negative_numbers = true, value_name = "ENTRIES",
          default_value_t = crate::exercises::multi_level::DEFAULT_L1_CAPACITY)]
    pub l1_capacity: u64,

    /// L1 time-to-live in seconds (the L2 TTL is --ttl)
    #[arg(long, value_parser = parse_count, allow_negative_numbers = true, value_name = "SECONDS",
          default_value_t = crate::exercises::multi_level::DEFAULT_L1_TTL_SECONDS)]
    pub l1_ttl: u64,

    /// Preload the N most requested products into L2 and L1 first (the lowest ids while nothing is counted)
    #[arg(long, value_parser = parse_count, allow_negative_numbers = true, value_name = "N")]
    pub warm: Option<u64>,

    /// Keep reading --id every --interval ms; print a line whenever the served value changes (with --json: one JSON object per change, then a summary object (JSON Lines))
    #[arg(long, requires = "id", conflicts_with_all = ["requests", "keys", "skew", "warm", "concurrency"])]
    pub listen: bool,

    /// How long --listen runs, in seconds [default: until Ctrl-C]
    #[arg(long, value_name = "SECONDS", requires = "listen", allow_negative_numbers = true)]
    pub duration: Option<f64>,

    /// Pause between reads in milliseconds, not timed [default: 200 with --listen, else 0]
    #[arg(long, value_parser = parse_count, allow_negative_numbers = true, value_name = "MS")]
    pub interval: Option<u64>,

    /// Write a new price through to the database, L2 and L1, then publish the key so other processes drop it
    #[arg(long, value_name = "PRODUCT_ID", requires = "price", allow_negative_numbers = true,
          conflicts_with_all = ["id", "requests", "keys", "skew", "warm", "listen", "invalidate", "concurrency", "interval"])]
    pub update: Option<i64>,

    /// The new price for --update, e.g. 24.99
    #[arg(long, value_name = "PRICE", requires = "update", allow_negative_numbers = true)]
    pub price: Option<String>,

    /// Delete the product's key from L2 and publish it: every process reloads it from the database
    #[arg(long, value_name = "PRODUCT_ID", allow_negative_numbers = true,
          conflicts_with_all = ["id", "requests", "keys", "skew", "warm", "listen", "concurrency", "interval"])]
    pub invalidate: Option<i64>,

    /// Subscribe to (and publish on) the invalidation channel; off shows how long L1 serves a stale row
    #[arg(long, value_enum, value_name = "ON|OFF", default_value_t = Switch::On)]
    pub invalidation: Switch,
}

impl From<MultiLevelArgs> for crate::exercises::multi_level::MultiLevelOptions {
    fn from(args: MultiLevelArgs) -> Self {
        crate::exercises::multi_level::MultiLevelOptions {
            id: args.id,
            requests: args.requests,
            keys: args.keys,
            skew: args.skew,
            concurrency: args.concurrency,
            l1_capacity: args.l1_capacity,
            l1_ttl: args.l1_ttl,
            warm: args.warm,
            listen: args.listen,
            update: args.update,
            price: args.price,
            invalidate: args.invalidate,
            interval: args.interval,
            duration: args.duration,
            invalidation: args.invalidation == Switch::On,
        }
    }
}

/// The output formats of `stats`; the global `--json` is `--format json`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum StatsFormatArg {
    Table,
    Json,
    Prometheus,
}

#[derive(Debug, Args)]
pub struct StatsArgs {
    /// Requests to send, all tasks together [default: 20000]
    #[arg(long, value_parser = parse_count, allow_negative_numbers = true, value_name = "N", conflicts_with = "duration")]
    pub requests: Option<u64>,

    /// Send requests for this many seconds instead of a number of them
    #[arg(long, value_name = "SECONDS", allow_negative_numbers = true)]
    pub duration: Option<f64>,

    /// At most this many requests per second, all tasks together [default: as fast as they go]
    #[arg(long, value_name = "PER_SECOND", allow_negative_numbers = true)]
    pub rate: Option<f64>,

    /// Tasks sending requests at the same time, sharing L1 and the connection pools
    #[arg(long, value_parser = parse_count, allow_negative_numbers = true, value_name = "N", default_value_t = 8)]
    pub concurrency: u64,

    /// Product ids 1..=K are requested [default: 1000, or every product with --maxmemory]
    #[arg(long, value_parser = parse_count, allow_negative_numbers = true, value_name = "K")]
    pub keys: Option<u64>,

    /// Zipf skew of the key popularity, 0 to 5: 0 is uniform, 1 is typical (id 1 is the most requested)
    #[arg(long, value_name = "S", default_value_t = 1.0, allow_negative_numbers = true)]
    pub skew: f64,

    /// Use the in-process L1 cache [default: on, off with --maxmemory]
    #[arg(long, overrides_with = "no_l1")]
    pub l1: bool,

    /// Skip L1: every request starts at Valkey
    #[arg(long, overrides_with = "l1")]
    pub no_l1: bool,

    /// L1 size in entries
    #[arg(long, value_parser = parse_count, allow_negative_numbers = true, value_name = "ENTRIES", default_value_t = 100)]
    pub l1_capacity: u64,

    /// Delete the cached products of this key prefix first (SCAN + UNLINK): a cold start
    #[arg(long)]
    pub fresh: bool,

    /// Output format (--json is --format json)
    #[arg(long, value_enum, value_name = "FORMAT")]
    pub format: Option<StatsFormatArg>,

    /// Limit Valkey's memory during the run (e.g. 2mb, 512kb, 1048576) and compare eviction policies;
    /// the previous maxmemory and policy are restored afterwards, also on Ctrl-C
    #[arg(long, value_name = "SIZE")]
    pub maxmemory: Option<String>,

    /// Eviction policies to compare under --maxmemory, comma-separated or repeated
    /// [default: allkeys-lru,allkeys-lfu]
    #[arg(long = "policy", value_name = "POLICY", value_delimiter = ',')]
    pub policies: Vec<String>,

    /// Start a valkey-server of its own for this run (on a free port, stopped afterwards) instead of
    /// VALKEY_URL: --maxmemory then limits only it, never a Valkey other people's keys live in
    #[arg(long)]
    pub private_valkey: bool,

    /// Percent of requests that read (0-100); the rest update the price of the product they drew
    /// (recorded, so `workshop-cli clean` restores it)
    #[arg(long, value_parser = parse_count, allow_negative_numbers = true, value_name = "PERCENT", default_value_t = 100)]
    pub read_ratio: u64,

    /// What a write does to the cache after the database commit [default: write-through]
    #[arg(long, value_enum, value_name = "MODE")]
    pub write_mode: Option<WriteModeArg>,

    /// Save the run's per-second series (req/s, hit rate, p50/p99) as JSON, for `workshop-cli plot`
    #[arg(long, value_name = "FILE")]
    pub out: Option<std::path::PathBuf>,
}

/// `stats --write-mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum WriteModeArg {
    /// Put the committed row into Valkey and L1
    WriteThrough,
    /// Delete the key from Valkey and L1; the next read loads the row
    Invalidate,
}

impl From<StatsArgs> for crate::exercises::stats::StatsOptions {
    fn from(args: StatsArgs) -> Self {
        use crate::exercises::stats::StatsFormat;
        crate::exercises::stats::StatsOptions {
            requests: args.requests,
            duration: args.duration,
            rate: args.rate,
            concurrency: args.concurrency,
            keys: args.keys,
            skew: args.skew,
            l1: match (args.l1, args.no_l1) {
                (true, _) => Some(true),
                (_, true) => Some(false),
                _ => None,
            },
            l1_capacity: args.l1_capacity,
            fresh: args.fresh,
            format: args.format.map(|format| match format {
                StatsFormatArg::Table => StatsFormat::Table,
                StatsFormatArg::Json => StatsFormat::Json,
                StatsFormatArg::Prometheus => StatsFormat::Prometheus,
            }),
            maxmemory: args.maxmemory,
            policies: args.policies,
            json: false,
            read_ratio: args.read_ratio,
            write_mode: args.write_mode.map(|mode| match mode {
                WriteModeArg::WriteThrough => crate::exercises::stats::writes::WriteMode::WriteThrough,
                WriteModeArg::Invalidate => crate::exercises::stats::writes::WriteMode::Invalidate,
            }),
            private_valkey: args.private_valkey,
        }
    }
}

#[derive(Debug, Args)]
pub struct PlotArgs {
    /// Saved runs (written by `--out` of stats, load, rate-limit or cluster)
    #[arg(required = true, value_name = "RUN.json")]
    pub runs: Vec<std::path::PathBuf>,

    /// Write the charts as one SVG file (plotters) instead of drawing them in the terminal
    #[arg(long, value_name = "FILE")]
    pub svg: Option<std::path::PathBuf>,

    /// PNG is not built in (it needs font files); use --svg and convert it
    #[arg(long, value_name = "FILE")]
    pub png: Option<std::path::PathBuf>,
}

impl From<PlotArgs> for crate::report::plot::PlotOptions {
    fn from(args: PlotArgs) -> Self {
        crate::report::plot::PlotOptions {
            runs: args.runs,
            svg: args.svg,
            png: args.png,
        }
    }
}

#[derive(Debug, Args)]
pub struct CleanArgs {
    /// Say what would be deleted and restored; change nothing
    #[arg(long)]
    pub dry_run: bool,

    /// Also delete the write-behind stream while it holds writes not yet in the database
    #[arg(long)]
    pub force: bool,
}

impl From<CleanArgs> for crate::exercises::clean::CleanOptions {
    fn from(args: CleanArgs) -> Self {
        crate::exercises::clean::CleanOptions {
            dry_run: args.dry_run,
            force: args.force,
        }
    }
}

#[derive(Debug, Args)]
pub struct WriteBehindArgs {
    /// Passengers to create; each is acknowledged once Valkey has it (at most 100000)
    #[arg(long, value_parser = parse_count, allow_negative_numbers = true, value_name = "N", default_value_t = 1000)]
    pub writes: u64,

    /// Most queued writes the flusher stores in one transaction (at most 5000)
    #[arg(long, value_parser = parse_count, allow_negative_numbers = true, value_name = "N", default_value_t = 100)]
    pub batch: u64,

    /// Milliseconds the flusher waits for a batch to fill before it stores what it has (at most 60000)
    #[arg(long, value_parser = parse_count, allow_negative_numbers = true, value_name = "MS", default_value_t = 100)]
    pub flush_interval: u64,

    /// Write-through creates timed in the same run for comparison, 0 for none [default: 100, at most --writes]
    #[arg(long, value_parser = parse_count, allow_negative_numbers = true, value_name = "N")]
    pub compare: Option<u64>,

    /// Acknowledge the writes and stop: they wait in the stream for a flusher
    #[arg(long, conflicts_with = "flush_only")]
    pub produce_only: bool,

    /// Run only the flusher: store what is queued, then stop
    #[arg(long, conflicts_with_all = ["writes", "compare"])]
    pub flush_only: bool,

    /// With --flush-only: keep flushing for this many seconds, also while the stream is empty
    #[arg(long, value_name = "SECONDS", requires = "flush_only", allow_negative_numbers = true)]
    pub duration: Option<f64>,

    /// Remove the rows this run stored and the keys it wrote at the end
    #[arg(long, conflicts_with = "produce_only")]
    pub cleanup: bool,
}

impl From<WriteBehindArgs> for crate::exercises::write_behind::WriteBehindOptions {
    fn from(args: WriteBehindArgs) -> Self {
        use crate::exercises::write_behind::Mode;
        let mode = match (args.produce_only, args.flush_only) {
            (true, _) => Mode::ProduceOnly,
            (_, true) => Mode::FlushOnly,
            _ => Mode::ProduceAndFlush,
        };
        crate::exercises::write_behind::WriteBehindOptions {
            mode,
            writes: args.writes,
            batch: args.batch,
            flush_interval_ms: args.flush_interval,
            compare: args.compare,
            duration_seconds: args.duration,
            cleanup: args.cleanup,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum StampedeModeName {
    /// Plain cache-aside: every request that misses runs the query
    None,
    /// One load per key per process; the other requests await it
    SingleFlight,
    /// One load per key per fleet: SET NX PX lock, waiters poll the cache
    Lock,
    /// Probabilistic early recomputation of a hot key nearing expiry (with an unprotected baseline)
    Xfetch,
    /// none, single-flight and lock on a cold key, then the expiry scenario with XFetch
    All,
}

#[derive(Debug, Args)]
// The stampede's default query is the slow aggregate: a cold key hurts most there.
#[command(mut_arg("query", |query| query.default_value("busiest-routes")))]
pub struct StampedeArgs {
    /// Requests for the one cold key, all at the same moment (per process) [default: 100, the unprotected mode fewer if a slow query would overrun --time-budget]
    #[arg(long, value_parser = parse_count, allow_negative_numbers = true)]
    pub concurrency: Option<u64>,

    /// Which protection to run
    #[arg(long, value_enum, default_value_t = StampedeModeName::All)]
    pub mode: StampedeModeName,

    /// Repeat each mode this many times, each round starting cold; the table adds them up
    #[arg(long, value_parser = parse_count, allow_negative_numbers = true, default_value_t = 1)]
    pub rounds: u64,

    #[command(flatten)]
    pub query: QueryArgs,

    /// Lock time-to-live: it must outlast one load, and frees the key should the holder die [default: 5000, or twice a timed load plus 1 s if longer]
    #[arg(long, value_parser = parse_count, allow_negative_numbers = true, value_name = "MS")]
    pub lock_ttl_ms: Option<u64>,

    /// How long a request waits for the lock holder before it queries the database itself [default: the lock TTL plus twice a timed load plus 1 s, so waiters outlast a dead holder's lock]
    #[arg(long, value_parser = parse_count, allow_negative_numbers = true, value_name = "MS")]
    pub lock_wait_ms: Option<u64>,

    /// Seconds the run's queries should take with the default sizes: one load is timed first, and the unprotected mode (and the expiry scenario) shrink to fit
    #[arg(long, value_parser = parse_count, allow_negative_numbers = true, value_name = "SECONDS", default_value_t = 30)]
    pub time_budget: u64,

    /// XFetch's beta: above 1 refreshes earlier, below 1 later
    #[arg(long, default_value_t = 1.0)]
    pub beta: f64,

    /// Start this many copies of this program that burst on the key at the same moment, and add up their counts
    #[arg(long, value_parser = parse_count, allow_negative_numbers = true, value_name = "N", default_value_t = 1)]
    pub processes: u64,

    /// Do not delete the cached entry and the lock first (for several processes sharing one key)
    #[arg(long)]
    pub keep_cache: bool,

    /// Internal: one of the --processes copies (waits for "go" on stdin, prints its counts as JSON)
    #[arg(long, hide = true)]
    pub fleet_member: bool,
}

impl From<StampedeArgs> for crate::exercises::stampede::StampedeOptions {
    fn from(args: StampedeArgs) -> Self {
        use crate::exercises::queries::QueryChoice;
        use crate::exercises::stampede::ModeChoice;
        use crate::patterns::stampede::Protection;
        let query = QueryChoice::from(args.query);
        let mode = match args.mode {
            StampedeModeName::None => ModeChoice::One(Protection::None),
            StampedeModeName::SingleFlight => ModeChoice::One(Protection::SingleFlight),
            StampedeModeName::Lock => ModeChoice::One(Protection::Lock),
            StampedeModeName::Xfetch => ModeChoice::One(Protection::Xfetch),
            StampedeModeName::All => ModeChoice::All,
        };
        crate::exercises::stampede::StampedeOptions {
            query,
            concurrency: args.concurrency,
            mode,
            rounds: args.rounds,
            lock_ttl_ms: args.lock_ttl_ms,
            lock_wait_ms: args.lock_wait_ms,
            time_budget_s: args.time_budget,
            beta: args.beta,
            processes: args.processes,
            keep_cache: args.keep_cache,
            fleet_member: args.fleet_member,
        }
    }
}

#[derive(Debug, Args)]
pub struct ClusterArgs {
    /// How many keys to cache and read (airport ids 1..N)
    #[arg(long, default_value_t = 300)]
    pub keys: u64,
    /// Reading tasks during the failover
    #[arg(long, default_value_t = 20)]
    pub concurrency: u64,
    /// Seconds of reads under load, with the failover inside them
    #[arg(long, value_name = "SECONDS", default_value_t = 16)]
    pub duration: u64,
    /// Seconds the primary is frozen (DEBUG SLEEP); longer than the cluster's node timeout to see a promotion
    #[arg(long, value_name = "SECONDS", default_value_t = 6)]
    pub freeze: u64,
    /// Show the key layout and hash tags only; freeze no node
    #[arg(long)]
    pub no_failover: bool,

    /// Save the reads per second and hit rate through the failover as JSON, for `workshop-cli plot`
    #[arg(long, value_name = "FILE")]
    pub out: Option<std::path::PathBuf>,
}

impl From<ClusterArgs> for crate::exercises::cluster::ClusterOptions {
    fn from(args: ClusterArgs) -> Self {
        crate::exercises::cluster::ClusterOptions {
            keys: args.keys,
            concurrency: args.concurrency,
            duration: args.duration,
            freeze: args.freeze,
            no_failover: args.no_failover,
        }
    }
}

#[derive(Debug, Args)]
pub struct LeaderboardArgs {
    /// How many of the busiest airports to list and compare (1 to 1000)
    #[arg(long, default_value_t = 10)]
    pub top: u64,

    /// The airport_id whose rank both sides report [default: the one ranked --top]
    #[arg(long)]
    pub airport: Option<i64>,

    /// Simulated new bookings, each an INSERT and a ZINCRBY (0 to 100000)
    #[arg(long, default_value_t = 1000)]
    pub bookings: u64,

    /// Timed reads of each kind (top N, one rank) on each side (1 to 10000) [default: 20, fewer (at least 3) when the aggregate would keep the database busy over 30 s]
    #[arg(long)]
    pub runs: Option<u64>,

    /// Keep the new bookings and the sorted set; `workshop-cli clean` removes them
    #[arg(long)]
    pub keep: bool,

    /// Seed of the flights the new bookings pick (the same seed books the same flights)
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
}

impl From<LeaderboardArgs> for crate::exercises::leaderboard::LeaderboardOptions {
    fn from(args: LeaderboardArgs) -> Self {
        crate::exercises::leaderboard::LeaderboardOptions {
            top: args.top,
            airport: args.airport,
            bookings: args.bookings,
            runs: args.runs,
            keep: args.keep,
            seed: args.seed,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LimiterName {
    /// INCR + PEXPIRE of one key per window
    FixedWindow,
    /// A sorted set of the last window's requests
    SlidingLog,
    /// A Lua script (loaded once, EVALSHA) refilling a bucket of tokens
    TokenBucket,
    /// The three, one after the other
    All,
}

#[derive(Debug, Args)]
pub struct RateLimitArgs {
    /// Which limiter to measure
    #[arg(long, value_enum, default_value_t = LimiterName::All)]
    pub limiter: LimiterName,

    /// Concurrent clients sharing the one limit (1 to 1000)
    #[arg(long, default_value_t = 10)]
    pub clients: u64,

    /// Requests per second each client sends
    #[arg(long, default_value_t = 30.0)]
    pub rate: f64,

    /// The limit: requests per second or minute, e.g. 100/s or 6000/min
    #[arg(long, default_value = "100/s")]
    pub limit: String,

    /// Seconds each limiter runs (1 to 600)
    #[arg(long, default_value_t = 3.0)]
    pub duration: f64,

    /// Tokens the bucket holds [default: 5 % of the limit per second, at least 1]
    #[arg(long)]
    pub burst: Option<u64>,

    /// Processes sharing the one limit (this one and copies of it, 1 to 16): the limit holds fleet-wide
    #[arg(long, default_value_t = 1)]
    pub processes: u64,

    /// Internal: set in the copies `--processes` starts (when their first limiter starts, Unix ms)
    #[arg(long, hide = true)]
    pub fleet_member_start_ms: Option<u64>,

    /// Save each limiter's allowed requests per second as JSON, for `workshop-cli plot`
    #[arg(long, value_name = "FILE")]
    pub out: Option<std::path::PathBuf>,
}

impl From<RateLimitArgs> for crate::exercises::rate_limit::RateLimitOptions {
    fn from(args: RateLimitArgs) -> Self {
        use crate::exercises::rate_limit::Limiter;
        let limiters = match args.limiter {
            LimiterName::FixedWindow => vec![Limiter::FixedWindow],
            LimiterName::SlidingLog => vec![Limiter::SlidingLog],
            LimiterName::TokenBucket => vec![Limiter::TokenBucket],
            LimiterName::All => Limiter::ALL.to_vec(),
        };
        crate::exercises::rate_limit::RateLimitOptions {
            limiters,
            clients: args.clients,
            rate: args.rate,
            limit: args.limit,
            duration_s: args.duration,
            burst: args.burst,
            processes: args.processes,
            member_start_ms: args.fleet_member_start_ms,
        }
    }
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on; port 0 picks a free port (printed at start)
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8080")]
    pub listen: std::net::SocketAddr,

    /// Allow a --listen address other machines can reach (off: loopback only)
    #[arg(long)]
    pub public: bool,

    /// L1 size in entries; 0 turns L1 off (every read starts at Valkey)
    #[arg(long, value_name = "ENTRIES", default_value_t = 10_000)]
    pub l1_capacity: u64,

    /// L1 time-to-live in seconds (the L2 TTL is --ttl)
    #[arg(long, value_name = "SECONDS", default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub l1_ttl: u64,

    /// How long a missing id is remembered (negative cache), seconds
    #[arg(long, value_name = "SECONDS", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=3_600))]
    pub negative_ttl: u64,

    /// How long a page of GET /products is cached, seconds (a PUT does not invalidate pages)
    #[arg(long, value_name = "SECONDS", default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..=3_600))]
    pub page_ttl: u64,

    /// Publish each PUT's key so every serve process drops it from L1, and listen for theirs
    #[arg(long, value_enum, default_value_t = Switch::On)]
    pub invalidation: Switch,

    /// A request that takes longer is answered 503
    #[arg(long, value_name = "SECONDS", default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..=600))]
    pub request_timeout: u64,

    /// Database connections in the pool
    #[arg(long, value_name = "N", default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub connections: u32,

    /// Request logging on stderr (tower-http tracing)
    #[arg(long, value_name = "LEVEL", default_value = "warn", value_parser = ["off", "error", "warn", "info", "debug", "trace"])]
    pub log: String,
}

impl From<&ServeArgs> for crate::serve::ServeOptions {
    fn from(args: &ServeArgs) -> Self {
        crate::serve::ServeOptions {
            listen: args.listen,
            public: args.public,
            l1_capacity: args.l1_capacity,
            l1_ttl: Duration::from_secs(args.l1_ttl),
            negative_ttl: Duration::from_secs(args.negative_ttl),
            page_ttl: Duration::from_secs(args.page_ttl),
            invalidation: args.invalidation == Switch::On,
            request_timeout: Duration::from_secs(args.request_timeout),
            connections: args.connections,
        }
    }
}

#[derive(Debug, Args)]
pub struct LoadArgs {
    /// The service's base URL
    #[arg(long, value_name = "URL", default_value = "http://127.0.0.1:8080")]
    pub url: String,

    /// Requests in flight at once
    #[arg(long, value_name = "N", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=10_000))]
    pub concurrency: u64,

    /// Requests per second over all tasks [default: as fast as they go]
    #[arg(long, value_name = "PER_SECOND", value_parser = parse_rate)]
    pub rate: Option<f64>,

    /// How long to run, seconds
    #[arg(long, value_name = "SECONDS", default_value_t = 20, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub duration: u64,

    /// Percent of requests that are GETs; the rest PUT a new price (restore with `workshop-cli clean`)
    #[arg(long, value_name = "PERCENT", default_value_t = 80, value_parser = clap::value_parser!(u64).range(0..=100))]
    pub read_ratio: u64,

    /// Zipf skew over the ids, 0 (uniform) to 5
    #[arg(long, value_name = "S", default_value_t = 1.0, value_parser = parse_skew)]
    pub skew: f64,

    /// The product ids to request, FIRST..LAST
    #[arg(long, value_name = "FIRST..LAST", default_value = "1..10000", value_parser = parse_id_range)]
    pub ids: (i64, i64),

    /// Save the outcome with its per-second time series as JSON
    #[arg(long, value_name = "FILE")]
    pub out: Option<std::path::PathBuf>,
}

fn parse_rate(raw: &str) -> Result<f64, String> {
    raw.parse::<f64>()
        .ok()
        .filter(|r| r.is_finite() && *r > 0.0)
        .ok_or_else(|| format!("'{raw}' is not a positive number of requests per second"))
}

fn parse_skew(raw: &str) -> Result<f64, String> {
    raw.parse::<f64>()
        .ok()
        .filter(|s| (0.0..=5.0).contains(s))
        .ok_or_else(|| format!("'{raw}' is not a skew from 0 to 5"))
}

fn parse_id_range(raw: &str) -> Result<(i64, i64), String> {
    let (first, last) = raw
        .split_once("..")
        .ok_or_else(|| format!("'{raw}' is not FIRST..LAST, e.g. 1..10000"))?;
    match (first.trim().parse::<i64>(), last.trim().parse::<i64>()) {
        (Ok(first), Ok(last)) if first <= last => Ok((first, last)),
        _ => Err(format!("'{raw}' is not FIRST..LAST with FIRST <= LAST, e.g. 1..10000")),
    }
}

impl From<&LoadArgs> for crate::exercises::load::LoadOptions {
    fn from(args: &LoadArgs) -> Self {
        crate::exercises::load::LoadOptions {
            url: args.url.clone(),
            concurrency: args.concurrency,
            rate: args.rate,
            duration: Duration::from_secs(args.duration),
            read_ratio: args.read_ratio,
            skew: args.skew,
            first_id: args.ids.0,
            last_id: args.ids.1,
            seed: 42,
        }
    }
}

#[derive(Debug, Args)]
pub struct GradeArgs {
    #[command(subcommand)]
    pub target: GradeTarget,
}

#[derive(Debug, Subcommand)]
pub enum GradeTarget {
    /// Run your cache-aside or write-through program several times and judge each run
    #[command(
        after_help = "Examples:\n  workshop-cli grade script --exercise cache-aside -- python3 my_cache_aside.py\n  workshop-cli grade script --exercise write-through -- ./write_through.sh\n  workshop-cli grade script --exercise cache-aside --timeout 60 --json -- node cache_aside.js\n\ncache-aside: read airport AIRPORT_ID through the cache, print the row as JSON.\nwrite-through: create or update the passenger with passport PASSPORTNO\n(FIRSTNAME, LASTNAME), database first, then Valkey; print it as JSON."
    )]
    Script(GradeScriptArgs),
    /// Judge a product API of exercise 7's shape (GET/PUT /products/{id}, /metrics)
    #[command(
        after_help = "Examples:\n  workshop-cli grade service -- python3 app.py --port {port}     2 instances in the grader's world\n  workshop-cli grade service --instances 1 -- ./my-service\n  workshop-cli grade service --url http://127.0.0.1:8000 --url http://127.0.0.1:8001"
    )]
    Service(GradeServiceArgs),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum GradedScript {
    /// Reads airport AIRPORT_ID through the cache and prints the row as JSON
    CacheAside,
    /// Creates or updates the passenger with passport PASSPORTNO (FIRSTNAME, LASTNAME), database then cache
    WriteThrough,
}

#[derive(Debug, Args)]
pub struct GradeScriptArgs {
    /// Which exercise the program implements
    #[arg(long, value_enum)]
    pub exercise: GradedScript,

    /// Seconds one run of the program may take; then it is killed and the step fails
    #[arg(long, value_name = "SECONDS", default_value = "30", value_parser = parse_seconds)]
    pub timeout: Duration,

    /// Size of the data set seeded into the grader's database
    #[arg(long, default_value_t = 0.02)]
    pub scale: f64,

    /// The program and its arguments, after `--`
    #[arg(last = true, required = true, value_name = "COMMAND")]
    pub command: Vec<String>,
}

#[derive(Debug, Args)]
pub struct GradeServiceArgs {
    /// A running instance of the service (repeat for a second one: the invalidation check needs two)
    #[arg(
        long = "url",
        value_name = "URL",
        required_unless_present = "command",
        conflicts_with = "command"
    )]
    pub urls: Vec<String>,

    /// With a command: how many instances the grader starts
    #[arg(long, value_name = "N", default_value_t = 2, value_parser = parse_count, allow_negative_numbers = true)]
    pub instances: u64,

    /// Seconds an instance may take to answer after it starts
    #[arg(long, value_name = "SECONDS", default_value = "30", value_parser = parse_seconds)]
    pub timeout: Duration,

    /// Size of the data set seeded into the grader's database (with a command)
    #[arg(long, default_value_t = 0.02)]
    pub scale: f64,

    /// With --url: the prefix of the service's Valkey keys [default: the key prefix]
    #[arg(long = "service-key-prefix", value_name = "PREFIX")]
    pub service_key_prefix: Option<String>,

    /// The command that starts the service, after `--`; `{port}` in it (and PORT) is its port
    #[arg(last = true, value_name = "COMMAND")]
    pub command: Vec<String>,
}

impl From<GradedScript> for crate::grade::script::ScriptExercise {
    fn from(exercise: GradedScript) -> Self {
        match exercise {
            GradedScript::CacheAside => crate::grade::script::ScriptExercise::CacheAside,
            GradedScript::WriteThrough => crate::grade::script::ScriptExercise::WriteThrough,
        }
    }
}

impl GradeScriptArgs {
    pub fn options(self, start: &std::path::Path) -> crate::grade::script::ScriptGradeOptions {
        crate::grade::script::ScriptGradeOptions {
            exercise: self.exercise.into(),
            command: self.command,
            timeout: self.timeout,
            scale: self.scale,
            start: start.to_path_buf(),
        }
    }
}

impl GradeServiceArgs {
    pub fn options(self, start: &std::path::Path) -> crate::grade::service::ServiceGradeOptions {
        crate::grade::service::ServiceGradeOptions {
            urls: self.urls,
            command: self.command,
            instances: self.instances,
            timeout: self.timeout,
            scale: self.scale,
            key_prefix: self.service_key_prefix,
            start: start.to_path_buf(),
        }
    }
}

#[derive(Debug, Args)]
pub struct TtlArgs {
    /// Products cached at once (1 to 100000)
    #[arg(long, default_value_t = 500, value_parser = parse_count)]
    pub keys: u64,

    /// Concurrent readers (1 to 256)
    #[arg(long, default_value_t = 8, value_parser = parse_count)]
    pub clients: u64,

    /// Reads per second of all readers together
    #[arg(long, default_value_t = 2000.0)]
    pub rate: f64,

    /// Seconds each scenario runs [default: 3 × the TTL + 1]
    #[arg(long)]
    pub duration: Option<f64>,

    /// Seed of the keys the readers pick
    #[arg(long, default_value_t = 12)]
    pub seed: u64,

    /// Save both scenarios' per-second series (reads and hit rate per second) as a saved run for `plot`
    #[arg(long, value_name = "FILE")]
    pub out: Option<std::path::PathBuf>,
}

impl From<TtlArgs> for crate::exercises::ttl::TtlOptions {
    fn from(args: TtlArgs) -> Self {
        crate::exercises::ttl::TtlOptions {
            keys: args.keys,
            clients: args.clients,
            rate: args.rate,
            duration_s: args.duration,
            seed: args.seed,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TrackingModeArg {
    /// CLIENT TRACKING on: Valkey remembers the keys the reader read
    Default,
    /// CLIENT TRACKING on BCAST PREFIX: every change under the prefix
    Bcast,
    /// Exercise 4's way: the writer publishes the key after its write
    Pubsub,
    /// All three, one after the other
    All,
}

#[derive(Debug, Args)]
pub struct TrackingArgs {
    /// How the reader's L1 learns of changes
    #[arg(long, value_enum, default_value_t = TrackingModeArg::All)]
    pub mode: TrackingModeArg,

    /// Writes the writer makes per mode, each checked in the reader (1 to 1000)
    #[arg(long, default_value_t = 20, value_parser = parse_count)]
    pub updates: u64,

    /// Products the reader caches in L1 (1 to 1000); the writes go round them
    #[arg(long, default_value_t = 10, value_parser = parse_count)]
    pub keys: u64,

    /// Internal: run as the reader process of a run (its mode, the run's key tag)
    #[arg(long, hide = true, value_name = "MODE")]
    pub reader: Option<String>,

    /// Internal: the run's key tag, for the reader process
    #[arg(long, hide = true)]
    pub run: Option<String>,
}

impl From<TrackingArgs> for crate::exercises::tracking::TrackingOptions {
    fn from(args: TrackingArgs) -> Self {
        use crate::exercises::tracking::TrackingMode;
        let modes = match args.mode {
            TrackingModeArg::Default => vec![TrackingMode::Default],
            TrackingModeArg::Bcast => vec![TrackingMode::Bcast],
            TrackingModeArg::Pubsub => vec![TrackingMode::PubSub],
            TrackingModeArg::All => TrackingMode::ALL.to_vec(),
        };
        crate::exercises::tracking::TrackingOptions {
            modes,
            updates: args.updates,
            keys: args.keys,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ApiCacheModeName {
    /// Plain cache-aside: every request that misses calls the upstream
    None,
    /// One call per city per process; the other requests await it
    SingleFlight,
    /// One call per city per fleet: SET NX PX lock, waiters poll the cache
    Lock,
    /// The three, one after the other
    All,
}

#[derive(Debug, Args)]
pub struct ApiCacheArgs {
    /// A real API instead of the built-in one: {country} and {city} are filled in (without them, /weather/{country}/{city} is appended)
    #[arg(long, value_name = "URL")]
    pub upstream: Option<String>,

    /// The built-in upstream's latency, MIN..MAX milliseconds (uniform) [default: 250..750]
    #[arg(long, value_name = "MIN..MAX")]
    pub latency: Option<String>,

    /// Share of the built-in upstream's calls that fail with 503, 0 to 1 [default: 0]
    #[arg(long, value_name = "SHARE", allow_negative_numbers = true)]
    pub failure_rate: Option<f64>,

    /// Requests, sent without the cache and then through it (1 to 100000)
    #[arg(long, value_parser = parse_count, allow_negative_numbers = true, default_value_t = 200)]
    pub requests: u64,

    /// Cities the requests ask for, Zipf-skewed (1 to 24)
    #[arg(long, value_parser = parse_count, allow_negative_numbers = true, default_value_t = 20)]
    pub cities: u64,

    /// Requests in flight at once (1 to 1000)
    #[arg(long, value_parser = parse_count, allow_negative_numbers = true, default_value_t = 20)]
    pub concurrency: u64,

    /// Seconds a cached answer is fresh (1 to 86400)
    #[arg(long, value_name = "SECONDS", value_parser = parse_count, allow_negative_numbers = true, default_value_t = 5)]
    pub max_age: u64,

    /// Seconds past max-age a cached answer is still served when the upstream fails (0: never)
    #[arg(long, value_name = "SECONDS", value_parser = parse_count, allow_negative_numbers = true, default_value_t = 60)]
    pub stale_if_error: u64,

    /// Stampede protection for the cold city
    #[arg(long, value_enum, default_value_t = ApiCacheModeName::All)]
    pub mode: ApiCacheModeName,

    /// Requests sent at once for one cold city (1 to 1000)
    #[arg(long, value_parser = parse_count, allow_negative_numbers = true, default_value_t = 50)]
    pub stampede: u64,

    /// Seed of the request mix and the built-in upstream's latencies
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
}

impl From<ApiCacheArgs> for crate::exercises::api_cache::ApiCacheOptions {
    fn from(args: ApiCacheArgs) -> Self {
        use crate::patterns::stampede::Protection;
        let modes = match args.mode {
            ApiCacheModeName::None => vec![Protection::None],
            ApiCacheModeName::SingleFlight => vec![Protection::SingleFlight],
            ApiCacheModeName::Lock => vec![Protection::Lock],
            ApiCacheModeName::All => vec![Protection::None, Protection::SingleFlight, Protection::Lock],
        };
        crate::exercises::api_cache::ApiCacheOptions {
            upstream: args.upstream,
            latency: args.latency,
            failure_rate: args.failure_rate,
            requests: args.requests,
            cities: args.cities,
            concurrency: args.concurrency,
            max_age: args.max_age,
            stale_if_error: args.stale_if_error,
            modes,
            stampede: args.stampede,
            seed: args.seed,
        }
    }
}

#[derive(Debug, Args)]
pub struct SessionArgs {
    /// Sessions logged in, read and (half of them) logged out on each side, timed (1 to 100000)
    #[arg(long, value_parser = parse_count, allow_negative_numbers = true, default_value_t = 1000)]
    pub sessions: u64,

    /// Seconds a session lives without a read; each read extends it again (1 to 3600)
    #[arg(long, value_name = "SECONDS", value_parser = parse_count, allow_negative_numbers = true, default_value_t = 5)]
    pub session_ttl: u64,

    /// Seconds between two looks at the expiring session's TTL (0.1 to 60)
    #[arg(long, value_name = "SECONDS", default_value_t = 1.0, allow_negative_numbers = true)]
    pub interval: f64,

    /// Internal: the second process reads this session and reports what it found
    #[arg(long, hide = true, value_name = "SESSION_ID")]
    pub peek: Option<String>,
}

impl From<SessionArgs> for crate::exercises::session::SessionOptions {
    fn from(args: SessionArgs) -> Self {
        crate::exercises::session::SessionOptions {
            sessions: args.sessions,
            session_ttl: args.session_ttl,
            interval: args.interval,
            peek: args.peek,
        }
    }
}
