//! Every screen of the guided app drawn into ratatui's `TestBackend` at
//! 80×24 and 60×15 (and one at 120×40), from state and outcomes built
//! here: the rendering is tested without services. Keys go through the
//! same `State::on_key` the app uses.

use std::collections::BTreeMap;
use std::time::Duration;

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ratatui::backend::TestBackend;
use ratatui::Terminal;
use workshop_cli::exercises::cache_aside::{CacheAsideOutcome, QueryDescription, RunRecord, Setup, Summary};
use workshop_cli::exercises::check_env::{Check, CheckReport, Status};
use workshop_cli::exercises::rate_limit::{Limit, Limiter, LimiterOutcome, RateLimitOutcome};
use workshop_cli::exercises::stampede::plan::Plan;
use workshop_cli::exercises::stampede::{
    ExpiryOutcome, ExpiryTiming, LockReport, ModeOutcome, Reference, StampedeOutcome, StampedeRun,
};
use workshop_cli::exercises::stats::workload::{
    HitRates, L1Size, RunStats, ServedCounts, SourceBuckets, SourceLatency,
};
use workshop_cli::exercises::stats::{StatsFormat, StatsOutcome};
use workshop_cli::measure::{Distribution, DistributionBucket, LatencySummary};
use workshop_cli::patterns::cache_aside::ReadSource;
use workshop_cli::patterns::stampede::{LockSettings, PathCounts, Protection, StampedeKeys};
use workshop_cli::workshop::catalogue::Catalogue;
use workshop_cli::workshop::progress::Progress;
use workshop_cli::workshop::run::GuidedOutcome;
use workshop_cli::workshop::screens::draw;
use workshop_cli::workshop::state::{Action, Finished, Live, RunStatus, State};

const SIZES: [(u16, u16); 2] = [(80, 24), (60, 15)];

fn state() -> State {
    let mut progress = Progress::fresh();
    progress.done.insert("check-env".into(), "2026-12-01T08:00:00Z".into());
    State::new(Catalogue::builtin().unwrap(), progress, "/tmp/unused-state.json".into())
}

fn screen(state: &State, (width, height): (u16, u16)) -> String {
    let mut terminal = Terminal::new(TestBackend::new(width, height)).unwrap();
    terminal.draw(|frame| draw(frame, state)).unwrap();
    let buffer = terminal.backend().buffer().clone();
    (0..height)
        .map(|y| {
            let mut line = String::new();
            let mut x = 0;
            while x < width {
                let cell = &buffer[(x, y)];
                line.push_str(cell.symbol());
                x += 1;
            }
            line.trim_end().to_string()
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Draws first (as the app does before every key), so page keys know the pane sizes.
fn press(state: &mut State, size: (u16, u16), code: KeyCode) -> Action {
    screen(state, size);
    state.on_key(KeyEvent::new(code, KeyModifiers::NONE))
}

fn snapshot(name: &str, state: &State) {
    for size in SIZES {
        insta::assert_snapshot!(format!("{name}_{}x{}", size.0, size.1), screen(state, size));
    }
}

fn millis(ms: f64) -> Duration {
    Duration::from_secs_f64(ms / 1000.0)
}

fn summary(count: u64, p50: f64, p99: f64) -> LatencySummary {
    LatencySummary {
        count,
        min: millis(p50 * 0.8),
        p50: millis(p50),
        p95: millis(p99 * 0.9),
        p99: millis(p99),
        max: millis(p99 * 1.2),
        mean: millis(p50 * 1.1),
    }
}

fn cache_aside_outcome() -> CacheAsideOutcome {
    let runs: Vec<RunRecord> = (1..=10)
        .map(|run| RunRecord {
            run,
            source: if run == 1 {
                ReadSource::Database
            } else {
                ReadSource::Cache
            },
            latency: if run == 1 { millis(23.4) } else { millis(0.21) },
            ttl_left_seconds: Some(300.0 - run as f64 * 0.01),
        })
        .collect();
    let edges = [0.12, 0.25, 0.5, 1.0, 2.1, 4.3, 8.9, 18.0, 37.0, 76.0];
    let buckets = edges
        .iter()
        .enumerate()
        .map(|(i, ms)| DistributionBucket {
            up_to: millis(*ms),
            counts: vec![
                [0, 0, 0, 0, 0, 0, 0, 31, 14, 2][i],
                [3, 812, 160, 19, 4, 2, 0, 0, 0, 0][i],
            ],
        })
        .collect();
    CacheAsideOutcome {
        exercise: "cache-aside",
        database: "MariaDB 11.8.3".into(),
        query: QueryDescription {
            name: "busiest-routes".into(),
            sql: "SELECT … GROUP BY from, to ORDER BY COUNT(*) DESC LIMIT 10".into(),
            params: BTreeMap::new(),
            statement: "SELECT … LIMIT 10".into(),
        },
        key: "workshop:mysql-d7c27b7d:query:e004".into(),
        ttl_seconds: 300,
        setup: Setup {
            connection: workshop_cli::exercises::services::ConnectionSetup {
                database_connect: Some(millis(4.1)),
                valkey_connect: Some(millis(0.9)),
                pool_warm_up: Some(millis(2.2)),
            },
            warmup_reads: 0,
        },
        result: workshop_cli::db::ResultSet {
            columns: vec!["route".into(), "bookings".into()],
            rows: vec![vec!["FRA-JFK".into(), 1234.into()]],
        },
        empty_result: false,
        runs,
        sources: BTreeMap::from([("cache", 9), ("database", 1)]),
        timeline: None,
        baseline_reads: 46,
        baseline_budget: None,
        summary: Summary {
            database: Some(summary(47, 23.4, 61.0)),
            cache: Some(summary(1000, 0.21, 0.9)),
            speedup: Some(111.4),
            not_compared: None,
        },
        cache_writes: None,
        concurrency: 1,
        connections: 1,
        wall_time: millis(1250.0),
        throughput_per_second: 800.0,
        distribution: Some(Distribution {
            series: vec!["database".into(), "cache".into()],
            buckets,
        }),
        consistent: Some(true),
        valkey_faults: None,
        warnings: vec![],
        verdict: Default::default(),
    }
}

fn rate_limit_outcome() -> RateLimitOutcome {
    let limiter = |limiter, each: Vec<u64>, max, cmds| LimiterOutcome {
        limiter,
        key: format!("workshop:mysql-d7c27b7d:rate-limit:{}:api", Limiter::name(limiter)),
        requests: 900,
        allowed: each.iter().sum(),
        denied: 900 - each.iter().sum::<u64>(),
        allowed_per_second: each.iter().sum::<u64>() as f64 / 3.0,
        allowed_each_second: each,
        max_in_any_second: max,
        commands_per_decision: cmds,
        round_trips_per_decision: 1.0,
        latency: Some(summary(900, 0.18, 0.6)),
        elapsed: Duration::from_secs(3),
        allowed_per_process: vec![],
        allowed_at_ms: vec![],
    };
    RateLimitOutcome {
        exercise: "rate-limit",
        limit: Limit {
            count: 100,
            window: Duration::from_secs(1),
        },
        limit_per_second: 100.0,
        clients: 10,
        rate_per_client: 30.0,
        offered_per_second: 300.0,
        duration_s: 3.0,
        burst: 5,
        processes: 1,
        limiters: vec![
            limiter(Limiter::FixedWindow, vec![100, 100, 100], 186, 3.0),
            limiter(Limiter::SlidingLog, vec![100, 99, 100], 100, 4.0),
            limiter(Limiter::TokenBucket, vec![104, 100, 100], 105, 1.0),
        ],
        warnings: vec![],
    }
}

fn check_report() -> CheckReport {
    let check = |name, status, detail: &str, hint: &str| Check {
        name,
        status,
        detail: detail.into(),
        hint: hint.into(),
    };
    CheckReport {
        ok: false,
        checks: vec![
            check("configuration", Status::Pass, "defaults and .env", ""),
            check(
                "database",
                Status::Fail,
                "cannot reach the database at 127.0.0.1:1",
                "start the services with `just up`",
            ),
            check("valkey", Status::Pass, "Valkey 8.1.1 at 127.0.0.1:6379", ""),
        ],
        exercises: vec![],
    }
}

fn connection() -> workshop_cli::exercises::services::ConnectionSetup {
    workshop_cli::exercises::services::ConnectionSetup {
        database_connect: Some(millis(4.1)),
        valkey_connect: Some(millis(0.9)),
        pool_warm_up: Some(millis(2.2)),
    }
}

fn query() -> QueryDescription {
    QueryDescription {
        name: "busiest-routes".into(),
        sql: "SELECT … GROUP BY from, to ORDER BY COUNT(*) DESC LIMIT 10".into(),
        params: BTreeMap::new(),
        statement: "SELECT … LIMIT 10".into(),
    }
}

/// One mode of a stampede: `requests` requests, `queries` of them loaded,
/// the rest waited for that load (or, unprotected, each loaded itself).
fn stampede_mode(mode: Protection, requests: u64, queries: u64, p99_ms: f64) -> ModeOutcome {
    let waited = if mode == Protection::None {
        0
    } else {
        requests - queries
    };
    let hits = requests - queries - waited;
    ModeOutcome {
        mode,
        requests,
        database_queries: queries,
        cache_hits: hits,
        waited,
        fell_back: 0,
        misses: queries,
        counts: PathCounts {
            hits,
            loaded: queries,
            waited,
            polls: if mode == Protection::Lock { waited * 3 } else { 0 },
            ..PathCounts::default()
        },
        queries_per_round: vec![queries],
        queries_per_process: None,
        lost_processes: vec![],
        latency: Some(summary(requests, p99_ms * 0.7, p99_ms)),
        wall_time: millis(p99_ms * 1.3),
        distinct_results: 1,
        mismatched_requests: 0,
        consistent: true,
    }
}

fn stampede_outcome() -> StampedeRun {
    let lock = LockSettings {
        ttl: Duration::from_millis(2000),
        wait: Duration::from_millis(2500),
        first_poll: Duration::from_millis(2),
        max_poll: Duration::from_millis(25),
    };
    StampedeRun::Compared(Box::new(StampedeOutcome {
        exercise: "stampede",
        database: "MariaDB 11.8.3".into(),
        query: query(),
        keys: StampedeKeys {
            value: "workshop:mysql-d7c27b7d:query:e004".into(),
            lock: "workshop:mysql-d7c27b7d:lock:e004".into(),
            xfetch: "workshop:mysql-d7c27b7d:xfetch:e004".into(),
        },
        ttl_seconds: 300,
        concurrency: 100,
        rounds: 1,
        processes: 1,
        keep_cache: false,
        pool_connections: 10,
        plan: Plan {
            cold_load: millis(212.0),
            time_budget: Duration::from_secs(60),
            estimated: millis(23_000.0),
            concurrency: 100,
            unprotected_requests: 100,
            adapted: false,
            expiry_skipped: None,
            notes: vec![],
            lock,
        },
        lock: LockReport {
            settings: lock,
            release: Some(workshop_cli::cache::CompareAndDelete::LuaCompareAndDelete),
        },
        setup: workshop_cli::exercises::stampede::Setup {
            connection: connection(),
            lock_connection: Some(millis(0.4)),
            fleet_start: None,
        },
        reference: Reference {
            rows: 10,
            digest: "8c1f0e2a9b3d4c5e".into(),
        },
        modes: vec![
            stampede_mode(Protection::None, 100, 100, 2140.0),
            stampede_mode(Protection::SingleFlight, 100, 1, 231.0),
            stampede_mode(Protection::Lock, 100, 1, 262.0),
        ],
        expiry: Some(ExpiryOutcome {
            tasks: 100,
            pace: Duration::from_millis(20),
            beta: 1.0,
            query: millis(208.0),
            timing: ExpiryTiming {
                expire_after: Duration::from_secs(3),
                window: millis(4124.0),
            },
            modes: vec![
                stampede_mode(Protection::None, 20_512, 97, 1980.0),
                stampede_mode(Protection::Xfetch, 20_644, 1, 3.1),
            ],
        }),
        expiry_skipped: None,
        warnings: vec![],
        incomplete: None,
    }))
}

fn stats_outcome() -> StatsOutcome {
    // Eight seconds of a Zipf workload: L1 and Valkey warm up, the hit rate climbs.
    let per_second = [1800, 2300, 2500, 2600, 2650, 2700, 2700, 2750];
    let hit_rates = [0.52, 0.81, 0.90, 0.93, 0.94, 0.95, 0.95, 0.96];
    let timeline = per_second
        .iter()
        .zip(hit_rates)
        .enumerate()
        .map(
            |(second, (&requests, rate))| workshop_cli::measure::timeline::SecondStats {
                second: second as u64,
                length_seconds: 1.0,
                requests,
                hits: (requests as f64 * rate) as u64,
                hit_rate: Some(rate),
                throughput_per_second: requests as f64,
                writes: 0,
                p50: Some(millis(0.05)),
                p99: Some(millis(3.8)),
                valkey_faults: Default::default(),
            },
        )
        .collect();
    let requests: u64 = per_second.iter().sum();
    let counters = workshop_cli::cache::two_level::CounterSnapshot {
        l1_hits: 13_900,
        l1_misses: requests - 13_900,
        l2_hits: 4_180,
        l2_misses: requests - 13_900 - 4_180,
        l2_errors: 0,
        database_loads: requests - 13_900 - 4_180,
        invalidations_received: 0,
        l1_clears: 0,
    };
    let latency = SourceLatency {
        all: Some(summary(requests, 0.05, 3.8)),
        l1: Some(summary(13_900, 0.004, 0.02)),
        l2: Some(summary(4_180, 0.21, 0.9)),
        database: Some(summary(requests - 13_900 - 4_180, 1.9, 6.4)),
    };
    StatsOutcome {
        exercise: "stats",
        database: "MariaDB 11.8.3".into(),
        settings: workshop_cli::exercises::stats::Settings {
            requests: Some(requests),
            duration_seconds: None,
            rate_per_second: None,
            concurrency: 8,
            keys: 1000,
            skew: 1.0,
            distribution: "zipf",
            hottest_keys_share: 0.62,
            l1: true,
            l1_capacity: 100,
            l1_ttl_seconds: 60,
            l2_ttl_seconds: 300,
            key_prefix: "workshop".into(),
            fresh: false,
            read_ratio: 100,
            write_mode: None,
        },
        setup: workshop_cli::exercises::stats::Setup {
            connection: connection(),
            keys_cleared: None,
        },
        run: Some(RunStats {
            requests,
            wall_time: Duration::from_secs(8),
            throughput_per_second: requests as f64 / 8.0,
            counters,
            served: ServedCounts {
                l1: 13_900,
                l2: 4_180,
                database: requests - 13_900 - 4_180,
            },
            hit_rate: HitRates::from_counters(requests, &counters, true),
            latency_us: latency.micros(),
            latency,
            l1_size: Some(L1Size {
                entries: 100,
                average_entry_bytes: 412.0,
                estimated_bytes: 61_800,
            }),
            valkey_faults: None,
            writes: None,
            timeline,
            durations: SourceBuckets::default(),
        }),
        valkey: None,
        eviction: None,
        private_valkey: None,
        warnings: vec![],
        format: StatsFormat::Table,
        verdict: Default::default(),
    }
}

/// Opens exercise `number` from the list with the arrow keys and Enter.
fn open(state: &mut State, number: u32) {
    let index = state
        .catalogue
        .exercises
        .iter()
        .position(|e| e.number == number)
        .unwrap();
    press(state, (80, 24), KeyCode::Home);
    for _ in 0..index {
        press(state, (80, 24), KeyCode::Down);
    }
    press(state, (80, 24), KeyCode::Enter);
}

fn finish(state: &mut State, outcome: GuidedOutcome, guess: Option<usize>) {
    let question = state.page.as_ref().unwrap().run.as_ref().unwrap().question.clone();
    let question = match (question, guess) {
        (Some((q, _)), Some(g)) => Some((q, g)),
        (q, _) => q,
    };
    let run = state.page.as_mut().unwrap().run.as_mut().unwrap();
    run.question = question.clone();
    run.status = RunStatus::Finished(Box::new(Finished::new(outcome, question.as_ref(), None)));
}

#[test]
fn the_list_shows_title_progress_and_keys_and_scrolls_when_short() {
    let mut state = state();
    snapshot("list", &state);
    let last = state.catalogue.exercises.last().unwrap().title.clone();
    for _ in 1..state.catalogue.exercises.len() {
        press(&mut state, (60, 15), KeyCode::Down);
    }
    let short = screen(&state, (60, 15));
    assert!(
        short.contains("the caching workshop") && short.contains("q quit"),
        "{short}"
    );
    let start: String = last.chars().take(12).collect();
    assert!(
        short.contains(&start),
        "the last exercise ({last}) scrolled into view:\n{short}"
    );
    snapshot("list_scrolled", &state);
}

#[test]
fn enter_on_an_empty_list_does_nothing_and_q_quits_only_from_the_list() {
    let mut state = state();
    state.catalogue.exercises.clear();
    assert_eq!(press(&mut state, (80, 24), KeyCode::Enter), Action::None);
    assert!(state.page.is_none() && state.message.is_none());
    let mut state = self::state();
    open(&mut state, 1);
    assert_eq!(press(&mut state, (80, 24), KeyCode::Char('q')), Action::None);
    assert!(state.page.is_some(), "q on a page does not quit");
    assert_eq!(press(&mut state, (80, 24), KeyCode::Esc), Action::None);
    assert!(state.page.is_none(), "Esc goes back to the list");
    assert_eq!(press(&mut state, (80, 24), KeyCode::Char('q')), Action::Quit);
}

#[test]
fn the_exercise_page_renders_the_briefing_and_scrolls_both_ways() {
    let mut state = state();
    open(&mut state, 1);
    let page = screen(&state, (80, 24));
    let of = format!("Exercise 1 of {}", state.catalogue.exercises.last().unwrap().number);
    assert!(
        page.contains(&of) && page.contains("Cache-aside (lazy loading)"),
        "{page}"
    );
    assert!(
        !page.contains("**") && !page.contains("```"),
        "no raw Markdown:\n{page}"
    );
    snapshot("briefing", &state);
    for _ in 0..12 {
        press(&mut state, (80, 24), KeyCode::Down);
    }
    press(&mut state, (80, 24), KeyCode::PageDown);
    snapshot("briefing_scrolled", &state);
    press(&mut state, (80, 24), KeyCode::End);
    let end = state.page.as_ref().unwrap().briefing.y;
    press(&mut state, (80, 24), KeyCode::PageDown);
    assert_eq!(state.page.as_ref().unwrap().briefing.y, end, "End is the end");
    press(&mut state, (80, 24), KeyCode::PageUp);
    assert!(state.page.as_ref().unwrap().briefing.y < end);
    press(&mut state, (80, 24), KeyCode::Home);
    assert_eq!(state.page.as_ref().unwrap().briefing.y, 0);
}

#[test]
fn a_variant_with_a_question_asks_for_a_prediction_first() {
    let mut state = state();
    open(&mut state, 1);
    assert_eq!(press(&mut state, (80, 24), KeyCode::Char('1')), Action::None);
    snapshot("question", &state);
    let Action::Run(request) = press(&mut state, (80, 24), KeyCode::Char('b')) else {
        panic!("answering runs the variant");
    };
    assert_eq!(request.args, ["cache-aside", "--id", "3797", "--fresh"]);
    assert_eq!(request.question.as_ref().map(|(_, guess)| *guess), Some(1));
}

#[test]
fn your_own_sql_is_asked_for_and_put_in_place_of_the_placeholder() {
    let mut state = state();
    open(&mut state, 1);
    press(&mut state, (80, 24), KeyCode::Char('3'));
    for c in "SELECT COUNT(*) FROM flight".chars() {
        press(&mut state, (80, 24), KeyCode::Char(c));
    }
    snapshot("prompt", &state);
    let Action::Run(request) = press(&mut state, (80, 24), KeyCode::Enter) else {
        panic!("Enter runs it");
    };
    assert_eq!(
        request.args,
        [
            "cache-aside",
            "--sql",
            "SELECT COUNT(*) FROM flight",
            "--runs",
            "20",
            "--fresh"
        ]
    );
}

#[test]
fn a_run_shows_live_progress_and_ctrl_c_cancels_it() {
    let mut state = state();
    open(&mut state, 1);
    press(&mut state, (80, 24), KeyCode::Char('2'));
    let Action::Run(request) = press(&mut state, (80, 24), KeyCode::Char('2')) else {
        panic!("a variant without a question runs at once");
    };
    state.begin_run(&request);
    if let Some(RunStatus::Running(live)) = state.run_status() {
        *live = Live {
            phase: "cache-aside reads".into(),
            total: Some(20),
            done: 7,
            steps: "reads".into(),
            notes: vec!["the baseline stops after 3 s of database reads".into()],
            elapsed: Duration::from_millis(1400),
        };
    }
    snapshot("running", &state);
    assert_eq!(press(&mut state, (80, 24), KeyCode::Char('n')), Action::None);
    assert_eq!(state.page.as_ref().unwrap().index, 1, "n does nothing during a run");
    let ctrl_c = state.on_key(KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL));
    assert_eq!(ctrl_c, Action::Cancel);
}

#[test]
fn the_outcome_is_drawn_with_a_table_a_bar_chart_the_guess_and_a_takeaway() {
    let mut state = state();
    open(&mut state, 1);
    press(&mut state, (80, 24), KeyCode::Char('1'));
    let Action::Run(request) = press(&mut state, (80, 24), KeyCode::Char('b')) else {
        panic!("runs");
    };
    state.begin_run(&request);
    finish(&mut state, GuidedOutcome::CacheAside(cache_aside_outcome()), None);
    let shown = screen(&state, (80, 24));
    assert!(shown.contains("111.4× faster"), "{shown}");
    assert!(shown.contains("✗ not quite"), "the guess 2×–10× against 111×:\n{shown}");
    snapshot("result", &state);
    // The result pane (focused once a run starts) scrolls to the bar chart and the report.
    for _ in 0..6 {
        press(&mut state, (80, 24), KeyCode::Down);
    }
    snapshot("result_scrolled", &state);
    let mut wide = Terminal::new(TestBackend::new(120, 40)).unwrap();
    wide.draw(|frame| draw(frame, &state)).unwrap();
    insta::assert_snapshot!("result_120x40", screen(&state, (120, 40)));
}

#[test]
fn a_hint_opens_over_the_briefing_and_the_result_stays() {
    let mut state = state();
    open(&mut state, 1);
    let Action::Run(request) = press(&mut state, (80, 24), KeyCode::Char('2')) else {
        panic!("runs");
    };
    state.begin_run(&request);
    finish(&mut state, GuidedOutcome::CacheAside(cache_aside_outcome()), None);
    press(&mut state, (80, 24), KeyCode::Char('h'));
    let shown = screen(&state, (80, 24));
    assert!(shown.contains("Hint 1/3") && shown.contains("111.4× faster"), "{shown}");
    snapshot("hint_over_result", &state);
    press(&mut state, (80, 24), KeyCode::Esc);
    assert!(state.page.as_ref().unwrap().hint.is_none() && state.page.is_some());
}

#[test]
fn rate_limits_show_a_table_and_per_second_sparklines() {
    let mut state = state();
    open(&mut state, 11);
    let Action::Run(request) = press(&mut state, (80, 24), KeyCode::Char('2')) else {
        panic!("runs");
    };
    state.begin_run(&request);
    finish(&mut state, GuidedOutcome::RateLimit(rate_limit_outcome()), None);
    let shown = screen(&state, (80, 24));
    assert!(shown.contains("fixed-window 186"), "{shown}");
    snapshot("rate_limit_result", &state);
}

#[test]
fn an_outcome_without_a_widget_shows_its_text_report_in_the_pane() {
    let mut state = state();
    open(&mut state, 0);
    let Action::Run(request) = press(&mut state, (80, 24), KeyCode::Char('1')) else {
        panic!("runs");
    };
    state.begin_run(&request);
    finish(&mut state, GuidedOutcome::CheckEnv(check_report()), None);
    press(&mut state, (80, 24), KeyCode::End);
    let shown = screen(&state, (80, 24));
    assert!(shown.contains("cannot reach the database"), "{shown}");
    snapshot("generic_result", &state);
}

#[test]
fn a_stampede_shows_its_modes_in_a_table_the_guess_and_the_query_count_takeaway() {
    let mut state = state();
    open(&mut state, 6);
    press(&mut state, (80, 24), KeyCode::Char('1'));
    let Action::Run(request) = press(&mut state, (80, 24), KeyCode::Char('a')) else {
        panic!("answering runs the variant");
    };
    state.begin_run(&request);
    finish(&mut state, GuidedOutcome::Stampede(stampede_outcome()), None);
    let shown = screen(&state, (80, 24));
    assert!(
        shown.contains("single flight: 1 database query for 100 requests; without it 100"),
        "{shown}"
    );
    assert!(shown.contains("✓ right"), "the guess 1 against 1 query:\n{shown}");
    assert!(shown.contains("single-flight"), "{shown}");
    snapshot("stampede_result", &state);
    // Scrolled down to the table (below the question at 60×15), then to
    // the end of the text report under it.
    for _ in 0..5 {
        press(&mut state, (60, 15), KeyCode::Down);
    }
    let scrolled = screen(&state, (60, 15));
    assert!(scrolled.contains("single-flight  100       1"), "{scrolled}");
    snapshot("stampede_result_scrolled", &state);
    press(&mut state, (80, 24), KeyCode::End);
    snapshot("stampede_result_end", &state);
}

#[test]
fn stats_show_per_second_sparklines_of_requests_and_hit_rate() {
    let mut state = state();
    open(&mut state, 3);
    press(&mut state, (80, 24), KeyCode::Char('1'));
    let Action::Run(request) = press(&mut state, (80, 24), KeyCode::Char('c')) else {
        panic!("answering runs the variant");
    };
    state.begin_run(&request);
    finish(&mut state, GuidedOutcome::Stats(stats_outcome()), None);
    let shown = screen(&state, (80, 24));
    assert!(shown.contains("requests per second (max 2750, 8 s)"), "{shown}");
    assert!(shown.contains("hit rate per second (%) (max 96, 8 s)"), "{shown}");
    assert!(shown.contains("✓ right"), "the guess above 90 % against 90 %:\n{shown}");
    snapshot("stats_result", &state);
    for _ in 0..4 {
        press(&mut state, (60, 15), KeyCode::Down);
    }
    let scrolled = screen(&state, (60, 15));
    assert!(scrolled.contains("hit rate per second (%)"), "{scrolled}");
    snapshot("stats_result_scrolled", &state);
}

#[test]
fn a_listener_run_alongside_is_shown_beside_the_report() {
    let mut state = state();
    open(&mut state, 4);
    press(&mut state, (80, 24), KeyCode::Char('2'));
    for c in "42".chars() {
        press(&mut state, (80, 24), KeyCode::Char(c));
    }
    let Action::Run(request) = press(&mut state, (80, 24), KeyCode::Enter) else {
        panic!("Enter runs it");
    };
    assert!(request.alongside.is_some(), "{request:?}");
    state.begin_run(&request);
    let report = [
        "product 42: price 12.50 -> 19.99 (committed in 3.1 ms)",
        "published the change on workshop:invalidate",
        "L1 here dropped the key; the next read went to Valkey",
    ];
    finish(
        &mut state,
        GuidedOutcome::Captured {
            lines: report.iter().map(|l| l.to_string()).collect(),
            verdict: None,
            takeaway: "the listener dropped its stale price 0.4 ms after the change".into(),
            facts: vec![],
        },
        None,
    );
    if let Some(RunStatus::Finished(finished)) = state.run_status() {
        finished.beside = Some(vec![
            "listening on product 42 (invalidation on)".into(),
            "0.0 s  12.50  L1".into(),
            "3.2 s  dropped: workshop:invalidate".into(),
            "3.2 s  19.99  Valkey".into(),
        ]);
    }
    let shown = screen(&state, (80, 24));
    assert!(shown.contains("The listener"), "{shown}");
    snapshot("listener_beside_result", &state);
}

#[test]
fn help_lists_the_keys_over_any_screen() {
    let mut state = state();
    press(&mut state, (80, 24), KeyCode::Char('?'));
    snapshot("help", &state);
    press(&mut state, (80, 24), KeyCode::Esc);
    assert!(!state.help);
}

#[test]
fn marking_done_saves_and_says_what_is_next() {
    let mut state = state();
    open(&mut state, 1);
    assert_eq!(press(&mut state, (80, 24), KeyCode::Char('d')), Action::Save);
    assert!(state.progress.is_done("cache-aside"));
    snapshot("marked_done", &state);
}

#[test]
fn an_exercise_with_a_grader_offers_grade_my_code_at_the_end_of_its_briefing() {
    let mut state = state();
    open(&mut state, 1);
    press(&mut state, (80, 24), KeyCode::End);
    let end = screen(&state, (80, 24));
    assert!(
        end.contains("Grade my code") && end.contains("workshop-cli grade script --exercise cache-aside --"),
        "{end}"
    );
    let mut state = self::state();
    open(&mut state, 0);
    press(&mut state, (80, 24), KeyCode::End);
    assert!(!screen(&state, (80, 24)).contains("Grade my code"));
}
