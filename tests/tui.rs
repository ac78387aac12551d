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
use workshop_cli::measure::{Distribution, DistributionBucket, LatencySummary};
use workshop_cli::patterns::cache_aside::ReadSource;
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
