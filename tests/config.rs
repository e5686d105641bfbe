//! The configuration module: the sample file, defaults, every validation rule, the
//! environment overlay, both region forms, and that no secret ever prints.

use std::time::Duration;

use mssql_resilience::circuit_breaker::WindowKind;
use mssql_resilience::config::{
    BreakerConfig, Config, Encryption, FailoverConfig, JitterKind, PoolConfig, RegionConfig,
    RetryBudgetConfig, RetryConfig, Role, Secret, TimeoutsConfig,
};
use mssql_resilience::retry::backoff::Jitter;
use mssql_resilience::ConfigError;

const EXAMPLE: &str = include_str!("../examples/regions.toml");
const PASSWORD: &str = "Sup3r-Secret-Pw";

fn env(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn example_env() -> Vec<(String, String)> {
    env(&[
        ("MSSQL_RESILIENCE__REGIONS__0__PASSWORD", PASSWORD),
        ("MSSQL_RESILIENCE__REGIONS__1__PASSWORD", PASSWORD),
    ])
}

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// One valid region in the host form, then `extra` appended.
fn minimal(extra: &str) -> String {
    format!(
        "[[regions]]\nname = \"westeurope\"\nhost = \"db.example.com\"\nuser = \"app\"\npassword = \"{PASSWORD}\"\n{extra}"
    )
}

fn err(toml: &str) -> ConfigError {
    Config::from_toml_str(toml).expect_err("the config must be rejected")
}

/// The error for `extra` added to a valid one-region config, as text.
fn message(extra: &str) -> String {
    err(&minimal(extra)).to_string()
}

fn assert_no_secret(text: &str) {
    assert!(!text.contains(PASSWORD), "a secret leaked: {text}");
    assert!(!text.contains("Sup3r"), "part of a secret leaked: {text}");
}

// ---------------------------------------------------------------------------------------
// The sample file and defaults
// ---------------------------------------------------------------------------------------

#[test]
fn the_example_loads_with_every_value() {
    let config = Config::from_toml_with_env(EXAMPLE, example_env()).unwrap();

    // Every section in the example holds the defaults.
    assert_eq!(config.timeouts, TimeoutsConfig::default());
    assert_eq!(config.retry, RetryConfig::default());
    assert_eq!(config.retry_budget, RetryBudgetConfig::default());
    assert_eq!(config.breaker, BreakerConfig::default());
    assert_eq!(config.pool, PoolConfig::default());
    assert_eq!(config.failover, FailoverConfig::default());

    assert_eq!(config.regions.len(), 2);
    let west = &config.regions[0];
    assert_eq!(west.name, "westeurope");
    assert_eq!(west.host.as_deref(), Some("myfog.database.windows.net"));
    assert_eq!(west.port, 1433);
    assert_eq!(west.database.as_deref(), Some("app"));
    assert_eq!(west.user.as_deref(), Some("app"));
    assert_eq!(west.password.as_ref().map(Secret::expose), Some(PASSWORD));
    assert_eq!(west.connection_string, None);
    assert_eq!(west.encryption, Encryption::Required);
    assert_eq!(west.application_name.as_deref(), Some("mssql-resilience"));
    assert_eq!(west.role, Role::ReadWrite);

    let north = config.region("northeurope").unwrap();
    assert_eq!(
        north.host.as_deref(),
        Some("myfog.secondary.database.windows.net")
    );
    assert_eq!(north.role, Role::ReadOnly);
    assert_eq!(
        north.address().unwrap(),
        ("myfog.secondary.database.windows.net".to_owned(), 1433)
    );
    assert!(config.region("uksouth").is_none());
}

#[test]
fn the_example_round_trips_through_toml() {
    let config = Config::from_toml_with_env(EXAMPLE, example_env()).unwrap();
    let text = toml::to_string(&config).unwrap();
    // Secrets serialize as `***`, never as themselves.
    assert_no_secret(&text);
    assert!(text.contains("password = \"***\""), "{text}");
    // Durations serialize as humane strings.
    assert!(text.contains("total = \"5s\""), "{text}");
    assert!(text.contains("base = \"50ms\""), "{text}");
    assert!(text.contains("idle_timeout = \"10m\""), "{text}");
    assert!(text.contains("max_open_duration = \"1m\""), "{text}");
    assert!(text.contains("jitter = \"full\""), "{text}");
    assert!(text.contains("role = \"read_only\""), "{text}");

    // Loading it back (with the real passwords) gives the same configuration.
    let again = Config::from_toml_with_env(&text, example_env()).unwrap();
    assert_eq!(again, config);
}

#[test]
fn the_example_without_passwords_says_which_is_missing() {
    assert_eq!(
        err(EXAMPLE).to_string(),
        "invalid `regions[0].password` = None: is required with `host` (SQL Server authentication)"
    );
}

#[test]
fn omitted_sections_take_the_documented_defaults() {
    let config = Config::from_toml_str(&minimal("")).unwrap();
    let t = config.timeouts;
    assert_eq!((t.total, t.attempt, t.connect), (secs(5), secs(2), secs(1)));
    let r = config.retry;
    assert_eq!(
        (r.max_attempts, r.base, r.cap, r.jitter, r.seed),
        (3, ms(50), secs(2), JitterKind::Full, None)
    );
    let b = config.retry_budget;
    assert_eq!((b.window, b.min_per_second, b.ratio), (secs(10), 10.0, 0.2));
    let c = config.breaker;
    assert_eq!(c.window_calls, None);
    assert_eq!(c.window(), WindowKind::Time(secs(10)));
    assert_eq!(
        (c.failure_rate_threshold, c.slow_call_rate_threshold),
        (0.5, 1.0)
    );
    assert_eq!((c.slow_call_duration, c.minimum_calls), (None, 10));
    assert_eq!(c.slow_call_duration_for(secs(5)), secs(2));
    // A budget too short for the default halves it, so the rule can still fire.
    assert_eq!(c.slow_call_duration_for(ms(1500)), ms(750));
    assert_eq!(
        (
            c.open_duration,
            c.open_backoff_multiplier,
            c.max_open_duration
        ),
        (secs(5), 2.0, secs(60))
    );
    assert_eq!((c.open_jitter, c.half_open_calls), (0.2, 3));
    let p = config.pool;
    assert_eq!(
        (
            p.max_size,
            p.min_idle,
            p.idle_timeout,
            p.max_lifetime,
            p.validation_timeout
        ),
        (100, None, Some(secs(600)), Some(secs(1800)), ms(500))
    );
    let f = config.failover;
    assert_eq!(
        (
            f.probe_interval,
            f.probe_timeout,
            f.probe_jitter,
            f.failback_hysteresis
        ),
        (secs(2), secs(1), 0.2, secs(30))
    );
    assert_eq!(
        (f.unhealthy_after, f.healthy_after, f.max_redirects),
        (1, 2, 2)
    );
    let region = &config.regions[0];
    assert_eq!(region.port, 1433);
    assert_eq!(region.encryption, Encryption::Required);
    assert_eq!(region.role, Role::Auto);
    assert_eq!(region.application_name.as_deref(), Some("mssql-resilience"));
    assert_eq!((&region.instance_name, &region.database), (&None, &None));

    // A partial section keeps the defaults of its other keys.
    let config = Config::from_toml_str(&minimal("[retry]\nmax_attempts = 5\n")).unwrap();
    assert_eq!(config.retry.max_attempts, 5);
    assert_eq!(config.retry.cap, secs(2));
}

#[test]
fn the_conversions_build_the_layers_types() {
    let config = Config::from_toml_str(&minimal(
        "[retry]\nmax_attempts = 4\njitter = \"decorrelated\"\nseed = 7\n\
         [breaker]\nwindow_calls = 20\nminimum_calls = 5\n\
         [pool]\nidle_timeout = \"none\"\nmin_idle = 2\n",
    ))
    .unwrap();
    let budget = config.timeouts.budget().unwrap();
    assert_eq!((budget.total(), budget.attempt()), (secs(5), secs(2)));
    let policy = config.retry.policy().unwrap();
    assert_eq!(policy.max_attempts(), 4);
    assert_eq!(policy.backoff().jitter(), Jitter::Decorrelated);
    assert_eq!(policy.backoff().base(), ms(50));
    config.retry_budget.budget().unwrap();
    let breaker = config.breaker.breaker_config("westeurope").unwrap();
    assert_eq!(breaker.name(), "westeurope");
    assert_eq!(config.breaker.window(), WindowKind::Count(20));
    assert_eq!(config.pool.idle_timeout, None);
    assert_eq!(config.pool.min_idle, Some(2));
    // `None` serializes as "none", so it survives a round trip.
    let text = toml::to_string(&config).unwrap();
    assert!(text.contains("idle_timeout = \"none\""), "{text}");
}

// ---------------------------------------------------------------------------------------
// Validation: every rule names the full path and the value
// ---------------------------------------------------------------------------------------

#[test]
fn durations_need_a_unit() {
    assert_eq!(
        message("[timeouts]\ntotal = \"5\"\n"),
        "invalid `timeouts.total` = \"5\": a duration needs a unit (ms, s, m, h)"
    );
    assert_eq!(
        message("[timeouts]\ntotal = 5\n"),
        "invalid `timeouts.total` = 5: a duration needs a unit (ms, s, m, h)"
    );
    assert_eq!(
        message("[pool]\nmax_lifetime = 1.5\n"),
        "invalid `pool.max_lifetime` = 1.5: a duration needs a unit (ms, s, m, h)"
    );
    assert_eq!(
        message("[retry]\nbase = \"-5ms\"\n"),
        "invalid `retry.base` = \"-5ms\": a duration must not be negative"
    );
    assert!(message("[retry]\ncap = \"5 sec\"\n")
        .starts_with("invalid `retry.cap` = \"5 sec\": unknown duration unit `sec`"));
}

#[test]
fn timeouts_rules() {
    assert_eq!(
        message("[timeouts]\ntotal = \"1s\"\nattempt = \"2s\"\n"),
        "invalid `timeouts.attempt` = 2s: must not exceed `timeouts.total` (1s)"
    );
    assert_eq!(
        message("[timeouts]\ntotal = \"0s\"\n"),
        "invalid `timeouts.total` = 0ns: must be greater than zero"
    );
    assert_eq!(
        message("[timeouts]\nattempt = \"0s\"\n"),
        "invalid `timeouts.attempt` = 0ns: must be greater than zero"
    );
    assert_eq!(
        message("[timeouts]\nconnect = \"0s\"\n"),
        "invalid `timeouts.connect` = 0ns: must be greater than zero"
    );
    assert_eq!(
        message("[timeouts]\nconnect = \"3s\"\n"),
        "invalid `timeouts.connect` = 3s: must not exceed `timeouts.attempt` (2s)"
    );
    // connect == attempt == total is fine.
    Config::from_toml_str(&minimal(
        "[timeouts]\ntotal = \"2s\"\nattempt = \"2s\"\nconnect = \"2s\"\n",
    ))
    .unwrap();
}

#[test]
fn max_total_rules_and_default() {
    assert_eq!(
        message("[timeouts]\nmax_total = \"4s\"\n"),
        "invalid `timeouts.max_total` = 4s: must not be less than `timeouts.total` (5s)"
    );
    assert_eq!(
        message("[timeouts]\nmax_total = \"25h\"\n"),
        "invalid `timeouts.max_total` = 90000s: must be at most 24h (`deadline::MAX_BUDGET`)"
    );
    let config = Config::from_toml_str(&minimal("")).unwrap();
    assert_eq!(config.timeouts.effective_max_total(), secs(60));
    assert_eq!(config.timeouts.budget().unwrap().max_total(), secs(60));
    // A total above the 60 s default raises the default with it.
    let config = Config::from_toml_str(&minimal("[timeouts]\ntotal = \"90s\"\n")).unwrap();
    assert_eq!(config.timeouts.effective_max_total(), secs(90));
    let config = Config::from_toml_str(&minimal("[timeouts]\nmax_total = \"2m\"\n")).unwrap();
    assert_eq!(config.timeouts.budget().unwrap().max_total(), secs(120));
}

#[test]
fn retry_rules_come_from_the_retry_layer() {
    assert_eq!(
        message("[retry]\nmax_attempts = 0\n"),
        "invalid `retry.max_attempts` = 0: must be between 1 and 100"
    );
    assert_eq!(
        message("[retry]\nmax_polling = 100001\n"),
        "invalid `retry.max_polling` = 100001: must be at most 100000"
    );
    let config = Config::from_toml_str(&minimal("[retry]\nmax_polling = 0\n")).unwrap();
    assert_eq!(config.retry.policy().unwrap().max_polling(), 0);
    assert_eq!(
        Config::from_toml_str(&minimal(""))
            .unwrap()
            .retry
            .max_polling,
        100
    );
    assert_eq!(
        message("[retry]\nbase = \"0s\"\n"),
        "invalid `retry.base` = 0ns: must be greater than zero"
    );
    assert_eq!(
        message("[retry]\nbase = \"3s\"\n"),
        "invalid `retry.cap` = 2s: must be at least `retry.base` (3s)"
    );
    let m = message("[retry]\njitter = \"fullish\"\n");
    assert!(
        m.starts_with("invalid `retry.jitter` = \"fullish\": unknown variant `fullish`"),
        "{m}"
    );
    assert_eq!(
        err(&minimal("[retry_budget]\nwindow = \"10ms\"\n")).field(),
        "retry_budget.window"
    );
    assert_eq!(
        message("[retry_budget]\nratio = -1\n"),
        "invalid `retry_budget.ratio` = -1.0: must be between 0.0 and 1000.0"
    );
    assert_eq!(
        err(&minimal("[retry_budget]\nmin_per_second = -1.0\n")).field(),
        "retry_budget.min_per_second"
    );
}

#[test]
fn breaker_rules_come_from_the_breaker() {
    assert_eq!(
        message("[breaker]\nwindow_calls = 0\n"),
        "invalid `breaker.window_calls` = 0: must hold at least 1 call"
    );
    assert_eq!(
        message("[breaker]\nwindow_duration = \"5ms\"\n"),
        "invalid `breaker.window_duration` = 5ms: must be at least 10ms"
    );
    assert_eq!(
        message("[breaker]\nfailure_rate_threshold = 1.5\n"),
        "invalid `breaker.failure_rate_threshold` = 1.5: must be in (0.0, 1.0]"
    );
    for (extra, field) in [
        (
            "slow_call_rate_threshold = 0.0",
            "breaker.slow_call_rate_threshold",
        ),
        ("slow_call_duration = \"0s\"", "breaker.slow_call_duration"),
        ("minimum_calls = 0", "breaker.minimum_calls"),
        (
            "window_calls = 5\nminimum_calls = 6",
            "breaker.minimum_calls",
        ),
        ("open_duration = \"0s\"", "breaker.open_duration"),
        (
            "open_backoff_multiplier = 0.5",
            "breaker.open_backoff_multiplier",
        ),
        ("max_open_duration = \"1s\"", "breaker.max_open_duration"),
        ("open_jitter = 1.0", "breaker.open_jitter"),
        ("half_open_calls = 0", "breaker.half_open_calls"),
    ] {
        let e = err(&minimal(&format!("[breaker]\n{extra}\n")));
        assert_eq!(e.field(), field, "{extra}: {e}");
    }
}

#[test]
fn pool_rules() {
    assert_eq!(
        message("[pool]\nmax_size = 0\n"),
        "invalid `pool.max_size` = 0: must be at least 1"
    );
    assert_eq!(
        message("[pool]\nmax_size = 4\nmin_idle = 5\n"),
        "invalid `pool.min_idle` = 5: must not exceed `pool.max_size` (4)"
    );
    assert_eq!(
        message("[pool]\nvalidation_timeout = \"0ms\"\n"),
        "invalid `pool.validation_timeout` = 0ns: must be greater than zero"
    );
    assert_eq!(
        message("[pool]\nidle_timeout = \"0s\"\n"),
        "invalid `pool.idle_timeout` = 0ns: must be greater than zero (write \"none\" to disable it)"
    );
    assert_eq!(
        err(&minimal("[pool]\nmax_lifetime = \"0s\"\n")).field(),
        "pool.max_lifetime"
    );
    Config::from_toml_str(&minimal("[pool]\nmax_size = 4\nmin_idle = 4\n")).unwrap();
}

#[test]
fn failover_rules() {
    assert_eq!(
        message("[failover]\nprobe_interval = \"50ms\"\nprobe_timeout = \"10ms\"\n"),
        "invalid `failover.probe_interval` = 50ms: must be at least 100ms"
    );
    assert_eq!(
        message("[failover]\nprobe_timeout = \"0s\"\n"),
        "invalid `failover.probe_timeout` = 0ns: must be greater than zero"
    );
    assert_eq!(
        message("[failover]\nprobe_timeout = \"3s\"\n"),
        "invalid `failover.probe_timeout` = 3s: must not exceed `failover.probe_interval` (2s)"
    );
    assert_eq!(
        message("[failover]\nprobe_jitter = 1.0\n"),
        "invalid `failover.probe_jitter` = 1.0: must be in [0.0, 1.0)"
    );
    assert_eq!(
        err(&minimal("[failover]\nprobe_jitter = -0.1\n")).field(),
        "failover.probe_jitter"
    );
    assert_eq!(
        message("[failover]\nunhealthy_after = 0\n"),
        "invalid `failover.unhealthy_after` = 0: must be at least 1"
    );
    assert_eq!(
        message("[failover]\nhealthy_after = 0\n"),
        "invalid `failover.healthy_after` = 0: must be at least 1"
    );
    assert_eq!(
        message("[failover]\nmax_redirects = 11\n"),
        "invalid `failover.max_redirects` = 11: must be at most 10"
    );
    Config::from_toml_str(&minimal(
        "[failover]\nprobe_interval = \"100ms\"\nprobe_timeout = \"100ms\"\nprobe_jitter = 0.0\nmax_redirects = 10\n",
    ))
    .unwrap();
}

#[test]
fn region_rules_name_the_index() {
    let region = |fields: &str| format!("[[regions]]\n{fields}\n");
    let valid = |name: &str| {
        format!("name = \"{name}\"\nhost = \"h\"\nuser = \"u\"\npassword = \"{PASSWORD}\"")
    };
    let two = |second: &str| format!("{}{}", region(&valid("westeurope")), region(second));

    assert_eq!(
        err("").to_string(),
        "invalid `regions` = (missing): missing field `regions`"
    );
    assert_eq!(
        err("regions = []").to_string(),
        "invalid `regions` = []: at least one region is required (a `[[regions]]` table)"
    );
    assert_eq!(
        err(&two(&format!("{}\nport = 0", valid("northeurope")))).to_string(),
        "invalid `regions[1].port` = 0: must not be 0"
    );
    assert_eq!(
        err(&two(&valid("westeurope"))).to_string(),
        "invalid `regions[1].name` = \"westeurope\": duplicates `regions[0].name`: region names must be unique"
    );
    assert_eq!(
        err(&two(&valid("North-Europe"))).to_string(),
        "invalid `regions[1].name` = \"North-Europe\": must be lower-case letters, digits, `_` or `-` (it is used as a metric label)"
    );
    assert_eq!(
        err(&two(&valid(""))).to_string(),
        "invalid `regions[1].name` = \"\": must not be empty"
    );
    assert_eq!(
        err(&two("host = \"h\"")).to_string(),
        "invalid `regions[1].name` = (missing): missing field `name`"
    );
    assert_eq!(
        err(&two("name = \"b\"\nport = 70000")).to_string(),
        "invalid `regions[1].port` = 70000: must be a whole number from 0 to 65535"
    );
    assert_eq!(
        err(&two("name = \"b\"\nrole = \"primary\"")).field(),
        "regions[1].role"
    );
    assert_eq!(
        err(&two("name = \"b\"\nencryption = \"off\"")).field(),
        "regions[1].encryption"
    );
    assert_eq!(
        err(&two(
            "name = \"b\"\nhost = \"\"\nuser = \"u\"\npassword = \"p\""
        ))
        .to_string(),
        "invalid `regions[1].host` = \"\": must not be empty"
    );
    assert_eq!(
        err(&two("name = \"b\"\nhost = \"h\"\npassword = \"p\"")).to_string(),
        "invalid `regions[1].user` = None: is required with `host` (SQL Server authentication)"
    );
}

#[test]
fn unknown_keys_are_rejected_without_showing_their_value() {
    assert_eq!(
        err(&minimal("[retry]\nmax_atempts = 5\n")).field(),
        "retry.max_atempts"
    );
    assert_eq!(err(&minimal("[retries]\n")).field(), "retries");
    // A misspelled `password` must not leak the password.
    let e = err(&format!(
        "[[regions]]\nname = \"a\"\nhost = \"h\"\nuser = \"u\"\npasword = \"{PASSWORD}\"\n"
    ));
    assert_eq!(e.field(), "regions[0].pasword");
    assert_eq!(e.value(), "***");
    assert!(e.to_string().contains("unknown field `pasword`"), "{e}");
    assert_no_secret(&e.to_string());
}

#[test]
fn toml_syntax_errors_give_the_position_and_never_the_line() {
    let e = err(&format!(
        "[timeouts]\ntotal = \"5s\"\n[[regions]]\nname = \"a\"\npassword = \"{PASSWORD}\" oops\n"
    ));
    assert_eq!(e.field(), "toml");
    assert!(e.value().starts_with("line 5, column"), "{e}");
    assert_no_secret(&e.to_string());
    let e = err("[retry]\nmax_attempts = 1\nmax_attempts = 2\n");
    assert_eq!(e.field(), "toml");
    assert!(e.value().starts_with("line 3"), "{e}");
}

// ---------------------------------------------------------------------------------------
// Regions: the two forms
// ---------------------------------------------------------------------------------------

fn cs_region(connection_string: &str, extra: &str) -> String {
    format!(
        "[[regions]]\nname = \"westeurope\"\nconnection_string = \"{connection_string}\"\n{extra}"
    )
}

const CS: &str = "server=tcp:myfog.database.windows.net,1433;database=app;user id=app;password=Sup3r-Secret-Pw;encrypt=true";

#[test]
fn connection_string_and_fields_are_exclusive() {
    let config = Config::from_toml_str(&cs_region(CS, "")).unwrap();
    assert!(config.regions[0].host.is_none());

    assert_eq!(
        err(&cs_region(CS, "host = \"h\"")).to_string(),
        "invalid `regions[0].host` = \"h\": must not be set together with `connection_string`: use one or the other"
    );
    for (extra, field) in [
        ("user = \"u\"", "regions[0].user"),
        ("database = \"d\"", "regions[0].database"),
        ("instance_name = \"i\"", "regions[0].instance_name"),
        ("port = 1444", "regions[0].port"),
    ] {
        assert_eq!(err(&cs_region(CS, extra)).field(), field, "{extra}");
    }
    let e = err(&cs_region(CS, &format!("password = \"{PASSWORD}\"")));
    assert_eq!(e.field(), "regions[0].password");
    assert_eq!(e.value(), "***");
    assert_no_secret(&e.to_string());

    assert_eq!(
        err("[[regions]]\nname = \"a\"\n").to_string(),
        "invalid `regions[0].connection_string` = None: either `connection_string` or `host` (with `user` and `password`) is required"
    );
}

#[test]
fn tiberius_config_from_the_fields() {
    let config = Config::from_toml_str(
        "[[regions]]\nname = \"local\"\nhost = \"127.0.0.1\"\nport = 14333\ndatabase = \"app\"\n\
         user = \"app\"\npassword = \"Sup3r-Secret-Pw\"\nencryption = \"not_supported\"\nrole = \"read_only\"\n",
    )
    .unwrap();
    let region = &config.regions[0];
    let tiberius = region.tiberius_config().unwrap();
    assert_eq!(tiberius.get_addr(), "127.0.0.1:14333");
    assert_eq!(region.address().unwrap(), ("127.0.0.1".to_owned(), 14333));
    let debug = format!("{tiberius:?}");
    assert!(debug.contains("encryption: NotSupported"), "{debug}");
    assert!(debug.contains("readonly: true"), "{debug}");
    assert!(
        debug.contains("application_name: Some(\"mssql-resilience\")"),
        "{debug}"
    );
    assert_no_secret(&debug);

    // A named instance without a port asks SQL Browser (1434).
    let region = RegionConfig {
        name: "named".into(),
        host: Some("sqlhost".into()),
        instance_name: Some("SQLEXPRESS".into()),
        user: Some("u".into()),
        password: Some(Secret::new("p")),
        ..RegionConfig::default()
    };
    region.validate().unwrap();
    assert_eq!(region.address().unwrap(), ("sqlhost".to_owned(), 1434));
}

#[test]
fn tiberius_config_from_a_connection_string() {
    let config = Config::from_toml_str(&cs_region(CS, "role = \"read_write\"")).unwrap();
    let region = &config.regions[0];
    let tiberius = region.tiberius_config().unwrap();
    assert_eq!(tiberius.get_addr(), "myfog.database.windows.net:1433");
    assert_eq!(
        region.address().unwrap(),
        ("myfog.database.windows.net".to_owned(), 1433)
    );
    let debug = format!("{tiberius:?}");
    assert!(debug.contains("encryption: Required"), "{debug}");
    assert!(debug.contains("bypass: false"), "{debug}");
    assert!(debug.contains("readonly: false"), "{debug}");
    assert!(
        debug.contains("application_name: Some(\"mssql-resilience\")"),
        "{debug}"
    );
    assert_no_secret(&debug);
}

#[test]
fn the_encryption_field_wins_over_the_connection_string() {
    let tiberius = |cs: &str, encryption: &str| {
        let config =
            Config::from_toml_str(&cs_region(cs, &format!("encryption = \"{encryption}\"")))
                .unwrap();
        format!("{:?}", config.regions[0].tiberius_config().unwrap())
    };
    // The string asks for no validation; the field says validate.
    let d = tiberius(
        "server=tcp:h,1433;TrustServerCertificate=true;encrypt=false",
        "required",
    );
    assert!(
        d.contains("encryption: Required") && d.contains("bypass: false"),
        "{d}"
    );
    // The string asks for plaintext; the field says TLS without validation.
    let d = tiberius(
        "server=tcp:h,1433;encrypt=DANGER_PLAINTEXT;TrustServerCertificateCA=/ca.pem",
        "trust_server_certificate",
    );
    assert!(
        d.contains("encryption: Required") && d.contains("bypass: true"),
        "{d}"
    );
    // The string asks for TLS; the field says plaintext (the testkit).
    let d = tiberius("server=tcp:h,1433;encrypt=true", "not_supported");
    assert!(d.contains("encryption: NotSupported"), "{d}");
    // The string's own application name and intent are kept where the fields are defaults.
    let d = tiberius(
        "server=tcp:h,1433;Application Name=billing;ApplicationIntent=ReadOnly",
        "required",
    );
    assert!(d.contains("application_name: Some(\"billing\")"), "{d}");
    assert!(d.contains("readonly: true"), "{d}");
}

#[test]
fn bad_connection_strings_never_echo_the_string() {
    for (cs, reason) in [
        (
            "server=tcp:h,1433;password='Sup3r-Secret-Pw",
            "is not a valid ADO.NET connection string: a quoted value is not closed",
        ),
        (
            "database=app;password=Sup3r-Secret-Pw",
            "has no `server` key (e.g. `server=tcp:myhost.database.windows.net,1433`)",
        ),
    ] {
        let e = err(&cs_region(cs, ""));
        assert_eq!(
            e.to_string(),
            format!("invalid `regions[0].connection_string` = ***: {reason}")
        );
    }
    for cs in [
        "server=tcp:h,notaport;password=Sup3r-Secret-Pw",
        "server=tcp:h,1,2,3;password=Sup3r-Secret-Pw",
        "server=tcp:h;password=Sup3r-Secret-Pw;MultiSubnetFailover=Sup3r-Secret-Pw",
    ] {
        let e = err(&cs_region(cs, ""));
        assert_eq!(e.field(), "regions[0].connection_string", "{e}");
        assert_eq!(e.value(), "***");
        assert!(
            e.to_string().contains("is not a valid connection string"),
            "{e}"
        );
        assert_no_secret(&e.to_string());
    }
    // Standalone, the error is relative to the region (the caller adds `regions[i]`).
    let region = RegionConfig {
        name: "a".into(),
        connection_string: Some(Secret::new("server=tcp:h,x;password=Sup3r-Secret-Pw")),
        ..RegionConfig::default()
    };
    let e = region.tiberius_config().unwrap_err();
    assert_eq!(e.field(), "connection_string");
    assert_eq!(
        e.within("regions[3]").field(),
        "regions[3].connection_string"
    );
}

// ---------------------------------------------------------------------------------------
// The environment overlay
// ---------------------------------------------------------------------------------------

#[test]
fn env_sets_and_overrides() {
    let config = Config::from_toml_with_env(
        &minimal("[retry]\nmax_attempts = 2\n"),
        env(&[
            ("MSSQL_RESILIENCE__RETRY__MAX_ATTEMPTS", "5"),
            ("MSSQL_RESILIENCE__TIMEOUTS__TOTAL", "10s"),
            ("MSSQL_RESILIENCE__RETRY_BUDGET__RATIO", "0.1"),
            ("MSSQL_RESILIENCE__BREAKER__WINDOW_CALLS", "20"),
            ("MSSQL_RESILIENCE__RETRY__JITTER", "none"),
            ("MSSQL_RESILIENCE__REGIONS__0__ROLE", "read_only"),
            (
                "MSSQL_RESILIENCE__REGIONS__0__ENCRYPTION",
                "trust_server_certificate",
            ),
            ("PATH", "/usr/bin"),
            ("MSSQL_RESILIENCE_CONFIG", "/nonexistent.toml"),
        ]),
    )
    .unwrap();
    assert_eq!(config.retry.max_attempts, 5);
    assert_eq!(config.timeouts.total, secs(10));
    assert_eq!(config.retry_budget.ratio, 0.1);
    assert_eq!(config.breaker.window_calls, Some(20));
    assert_eq!(config.retry.jitter, JitterKind::None);
    assert_eq!(config.regions[0].role, Role::ReadOnly);
    assert_eq!(
        config.regions[0].encryption,
        Encryption::TrustServerCertificate
    );
    // Keys are case-insensitive in the variable name.
    let config = Config::from_toml_with_env(
        &minimal(""),
        env(&[("MSSQL_RESILIENCE__failover__Max_Redirects", "3")]),
    )
    .unwrap();
    assert_eq!(config.failover.max_redirects, 3);
}

#[test]
fn env_adds_regions_by_index() {
    let config = Config::from_toml_with_env(
        &minimal(""),
        env(&[
            // Listed out of order on purpose: indices are applied in numeric order.
            ("MSSQL_RESILIENCE__REGIONS__2__NAME", "uksouth"),
            (
                "MSSQL_RESILIENCE__REGIONS__1__HOST",
                "northeurope.example.com",
            ),
            ("MSSQL_RESILIENCE__REGIONS__1__NAME", "northeurope"),
            ("MSSQL_RESILIENCE__REGIONS__1__USER", "app"),
            ("MSSQL_RESILIENCE__REGIONS__1__PASSWORD", "pw"),
            ("MSSQL_RESILIENCE__REGIONS__1__PORT", "1444"),
            (
                "MSSQL_RESILIENCE__REGIONS__2__CONNECTION_STRING",
                "server=tcp:uk.example.com,1433;user id=app;password=pw",
            ),
        ]),
    )
    .unwrap();
    let names: Vec<_> = config.regions.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["westeurope", "northeurope", "uksouth"]);
    assert_eq!(config.regions[1].port, 1444);
    assert_eq!(
        config.regions[2].address().unwrap(),
        ("uk.example.com".to_owned(), 1433)
    );

    // With no file at all, the environment alone can describe a region.
    let config = Config::from_toml_with_env(
        "",
        env(&[
            ("MSSQL_RESILIENCE__REGIONS__0__NAME", "westeurope"),
            ("MSSQL_RESILIENCE__REGIONS__0__HOST", "db"),
            ("MSSQL_RESILIENCE__REGIONS__0__USER", "app"),
            ("MSSQL_RESILIENCE__REGIONS__0__PASSWORD", "pw"),
        ]),
    )
    .unwrap();
    assert_eq!(config.regions[0].host.as_deref(), Some("db"));
}

#[test]
fn env_index_that_skips_is_an_error_naming_the_variable() {
    let e = Config::from_toml_with_env(
        &minimal(""),
        env(&[("MSSQL_RESILIENCE__REGIONS__2__PASSWORD", PASSWORD)]),
    )
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        "invalid `MSSQL_RESILIENCE__REGIONS__2__PASSWORD` = 2: skips an index: `regions` has 1 entry, so the next new one is 1"
    );
    assert_no_secret(&e.to_string());
    let e = Config::from_toml_with_env(&minimal(""), env(&[("MSSQL_RESILIENCE__RETRY", "5")]))
        .unwrap_err();
    assert_eq!(e.field(), "MSSQL_RESILIENCE__RETRY");
}

#[test]
fn env_numeric_looking_secrets_and_names_stay_strings() {
    let config = Config::from_toml_with_env(
        &minimal(""),
        env(&[
            ("MSSQL_RESILIENCE__REGIONS__0__PASSWORD", "0123"),
            ("MSSQL_RESILIENCE__REGIONS__0__DATABASE", "2024"),
            ("MSSQL_RESILIENCE__REGIONS__0__USER", "1e3"),
            ("MSSQL_RESILIENCE__REGIONS__0__NAME", "1"),
        ]),
    )
    .unwrap();
    let region = &config.regions[0];
    assert_eq!(region.password.as_ref().unwrap().expose(), "0123");
    assert_eq!(region.database.as_deref(), Some("2024"));
    assert_eq!(region.user.as_deref(), Some("1e3"));
    assert_eq!(region.name, "1");
}

#[test]
fn env_errors_say_which_variable_set_the_value() {
    let e = Config::from_toml_with_env(
        &minimal(""),
        env(&[("MSSQL_RESILIENCE__RETRY__MAX_ATTEMPTS", "0")]),
    )
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        "invalid `retry.max_attempts` = 0: must be between 1 and 100 (from `MSSQL_RESILIENCE__RETRY__MAX_ATTEMPTS`)"
    );
    let e = Config::from_toml_with_env(
        &minimal(""),
        env(&[("MSSQL_RESILIENCE__TIMEOUTS__TOTAL", "5")]),
    )
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        "invalid `timeouts.total` = 5: a duration needs a unit (ms, s, m, h) (from `MSSQL_RESILIENCE__TIMEOUTS__TOTAL`)"
    );
    let e = Config::from_toml_with_env(
        &minimal(""),
        env(&[("MSSQL_RESILIENCE__RETRY__MAX_ATTEMPTS", "many")]),
    )
    .unwrap_err();
    assert_eq!(e.field(), "retry.max_attempts");
    assert!(
        e.to_string()
            .contains("MSSQL_RESILIENCE__RETRY__MAX_ATTEMPTS"),
        "{e}"
    );
}

// ---------------------------------------------------------------------------------------
// Files and the process environment
// ---------------------------------------------------------------------------------------

#[test]
fn from_file_reads_and_names_the_path_on_error() {
    let dir = std::env::temp_dir().join(format!("mssql-resilience-config-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("config.toml");
    std::fs::write(&path, minimal("[retry]\nmax_attempts = 4\n")).unwrap();
    assert_eq!(Config::from_file(&path).unwrap().retry.max_attempts, 4);

    let missing = dir.join("missing.toml");
    let e = Config::from_file(&missing).unwrap_err();
    assert_eq!(e.field(), "config_file");
    assert!(e.value().contains("missing.toml"), "{e}");
    assert!(e.to_string().contains("cannot be read"), "{e}");

    std::fs::write(&path, "[retry\n").unwrap();
    let e = Config::from_file(&path).unwrap_err();
    assert_eq!(e.field(), "toml");
    assert!(e.value().contains("config.toml, line 1"), "{e}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The only test that touches the process environment.
#[test]
fn from_env_reads_the_file_and_the_variables() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/regions.toml");
    std::env::set_var("MSSQL_RESILIENCE_CONFIG", &path);
    std::env::set_var("MSSQL_RESILIENCE__REGIONS__0__PASSWORD", PASSWORD);
    std::env::set_var("MSSQL_RESILIENCE__REGIONS__1__PASSWORD", "0123");
    std::env::set_var("MSSQL_RESILIENCE__RETRY__MAX_ATTEMPTS", "6");
    let config = Config::from_env().unwrap();
    assert_eq!(config.retry.max_attempts, 6);
    assert_eq!(
        config.regions[1].password.as_ref().unwrap().expose(),
        "0123"
    );
    assert_eq!(config.regions[1].role, Role::ReadOnly);

    std::env::set_var("MSSQL_RESILIENCE_CONFIG", path.with_file_name("nope.toml"));
    let e = Config::from_env().unwrap_err();
    assert_eq!(e.field(), "MSSQL_RESILIENCE_CONFIG");
    assert!(e.value().contains("nope.toml"), "{e}");
    for var in [
        "MSSQL_RESILIENCE_CONFIG",
        "MSSQL_RESILIENCE__REGIONS__0__PASSWORD",
        "MSSQL_RESILIENCE__REGIONS__1__PASSWORD",
        "MSSQL_RESILIENCE__RETRY__MAX_ATTEMPTS",
    ] {
        std::env::remove_var(var);
    }
}

// ---------------------------------------------------------------------------------------
// Secrets never print
// ---------------------------------------------------------------------------------------

#[test]
fn debug_never_shows_a_secret() {
    let text = format!(
        "{}{}",
        minimal(""),
        cs_region(CS, "").replace("westeurope", "northeurope")
    );
    let config = Config::from_toml_str(&text).unwrap();
    assert_eq!(
        config.regions[0].password.as_ref().unwrap().expose(),
        PASSWORD
    );
    assert!(config.regions[1]
        .connection_string
        .as_ref()
        .unwrap()
        .expose()
        .contains(PASSWORD));
    for debug in [format!("{config:?}"), format!("{config:#?}")] {
        assert_no_secret(&debug);
        assert!(
            !debug.contains("myfog.database.windows.net,1433"),
            "{debug}"
        );
    }
    let debug = format!("{config:?}");
    assert!(debug.contains("password: Some(***)"), "{debug}");
    assert!(debug.contains("connection_string: Some(***)"), "{debug}");
    let serialized = toml::to_string(&config).unwrap();
    assert_no_secret(&serialized);
    assert_no_secret(&serde_json::to_string(&config).unwrap());
}

#[test]
fn no_error_shows_a_secret() {
    for extra in [
        "[retry]\nmax_attempts = 0\n",
        "[timeouts]\ntotal = \"5\"\n",
        "[retries]\n",
        "port = 0\n",
    ] {
        assert_no_secret(&err(&minimal(extra)).to_string());
    }
    // A secret of the wrong type: the error shows neither the value nor its parts.
    let e = err(&format!(
        "[[regions]]\nname = \"a\"\nhost = \"h\"\nuser = \"u\"\npassword = [\"{PASSWORD}\"]\n"
    ));
    assert_eq!(e.field(), "regions[0].password");
    assert_eq!(e.value(), "***");
    assert_no_secret(&e.to_string());
    let e = err(&cs_region(
        CS,
        "[[regions]]\nname = \"westeurope\"\nhost = \"h\"\n",
    ));
    assert_no_secret(&e.to_string());
    let e = err(&minimal("password = { value = \"Sup3r-Secret-Pw\" }\n"));
    assert_no_secret(&e.to_string());
    assert_eq!(e.field(), "toml"); // a duplicate key: a syntax error, no line shown
}

// ---------------------------------------------------------------------------------------
// Bad input: every value has a range, no error echoes huge input or a secret
// ---------------------------------------------------------------------------------------

/// The error for a `key = value` line in `[section]`, as loaded from TOML.
fn section_error(section: &str, line: &str) -> ConfigError {
    err(&minimal(&format!("[{section}]\n{line}\n")))
}

#[test]
fn a_budget_longer_than_max_budget_is_rejected_from_toml_and_env() {
    // It used to load, and then every call panicked adding the budget to `now`.
    assert_eq!(
        message("[timeouts]\ntotal = \"9223372036854775807s\"\n"),
        "invalid `timeouts.total` = 9223372036854775807s: must be at most 24h (`deadline::MAX_BUDGET`)"
    );
    let e = Config::from_toml_with_env(
        &minimal(""),
        env(&[("MSSQL_RESILIENCE__TIMEOUTS__TOTAL", "9223372036854775807s")]),
    )
    .unwrap_err();
    assert_eq!(e.field(), "timeouts.total");
    assert!(
        e.to_string().ends_with(
            "must be at most 24h (`deadline::MAX_BUDGET`) (from `MSSQL_RESILIENCE__TIMEOUTS__TOTAL`)"
        ),
        "{e}"
    );
    assert_eq!(
        message("[timeouts]\ntotal = \"25h\"\nattempt = \"25h\"\nconnect = \"1s\"\n"),
        "invalid `timeouts.total` = 90000s: must be at most 24h (`deadline::MAX_BUDGET`)"
    );
    let config = Config::from_toml_str(&minimal(
        "[timeouts]\ntotal = \"24h\"\nattempt = \"24h\"\nconnect = \"24h\"\n",
    ))
    .unwrap();
    assert_eq!(config.timeouts.budget().unwrap().total(), secs(24 * 3600));
}

#[test]
fn failover_durations_have_upper_bounds() {
    // The probe task panicked on an interval this long.
    assert_eq!(
        section_error("failover", "probe_interval = \"18446744073709551615s\"").to_string(),
        "invalid `failover.probe_interval` = 18446744073709551615s: must be at most 1h"
    );
    assert_eq!(
        section_error("failover", "probe_interval = \"61m\"").field(),
        "failover.probe_interval"
    );
    assert_eq!(
        section_error("failover", "failback_hysteresis = \"25h\"").to_string(),
        "invalid `failover.failback_hysteresis` = 90000s: must be at most 24h"
    );
    assert_eq!(
        section_error("failover", "hedge_delay = \"18446744073709551615s\"").to_string(),
        "invalid `failover.hedge_delay` = 18446744073709551615s: must be at most 24h"
    );
    // As documented: at most the attempt timeout.
    assert_eq!(
        section_error("failover", "hedge_delay = \"3s\"").to_string(),
        "invalid `failover.hedge_delay` = 3s: must not exceed `timeouts.attempt` (2s), or \"none\" to disable hedging"
    );
    Config::from_toml_str(&minimal(
        "[timeouts]\ntotal = \"24h\"\nattempt = \"24h\"\n[failover]\nprobe_interval = \"1h\"\nprobe_timeout = \"1h\"\nfailback_hysteresis = \"24h\"\nhedge_delay = \"24h\"\n",
    ))
    .unwrap();
}

#[test]
fn counts_and_sizes_have_upper_bounds() {
    for (section, line, expected) in [
        // Reserved 8.5 GB per region at build time.
        ("breaker", "window_calls = 4294967295", "invalid `breaker.window_calls` = 4294967295: must hold at most 10000 calls"),
        ("breaker", "window_duration = \"2h\"", "invalid `breaker.window_duration` = 7200s: must be at most 1h"),
        ("breaker", "minimum_calls = 10001", "invalid `breaker.minimum_calls` = 10001: must be at most 10000"),
        ("breaker", "half_open_calls = 4294967295", "invalid `breaker.half_open_calls` = 4294967295: must be at most 1000"),
        ("breaker", "open_backoff_multiplier = 1e9", "invalid `breaker.open_backoff_multiplier` = 1000000000.0: must be at most 100.0"),
        ("pool", "max_size = 4294967295", "invalid `pool.max_size` = 4294967295: must be at most 1000"),
        ("pool", "max_size = 500\nmin_idle = 500", "invalid `pool.min_idle` = 500: must be at most 100"),
        ("pool", "idle_timeout = \"25h\"", "invalid `pool.idle_timeout` = 90000s: must be at most 24h (or \"none\")"),
        ("pool", "max_lifetime = \"25h\"", "invalid `pool.max_lifetime` = 90000s: must be at most 24h (or \"none\")"),
        ("pool", "validation_timeout = \"2m\"", "invalid `pool.validation_timeout` = 120s: must be at most 1m"),
        ("failover", "healthy_after = 4294967295", "invalid `failover.healthy_after` = 4294967295: must be at most 1000"),
        ("failover", "unhealthy_after = 4294967295", "invalid `failover.unhealthy_after` = 4294967295: must be at most 1000"),
        // An unlimited retry budget.
        ("retry_budget", "min_per_second = 1e308", "invalid `retry_budget.min_per_second` = 1e308: must be a finite number between 0 and 100000"),
        ("retry_budget", "ratio = 1e9", "invalid `retry_budget.ratio` = 1000000000.0: must be between 0.0 and 1000.0"),
        ("retry_budget", "ratio = nan", "invalid `retry_budget.ratio` = NaN: must be between 0.0 and 1000.0"),
        ("retry", "cap = \"25h\"", "invalid `retry.cap` = 90000s: must be at most 24h"),
    ] {
        assert_eq!(section_error(section, line).to_string(), expected, "{line}");
    }
    // The bounds themselves load.
    let config = Config::from_toml_str(&minimal(
        "[pool]\nmax_size = 1000\nmin_idle = 100\nidle_timeout = \"24h\"\nmax_lifetime = \"24h\"\nvalidation_timeout = \"1m\"\n\
         [breaker]\nwindow_calls = 10000\nminimum_calls = 10000\nhalf_open_calls = 1000\nopen_backoff_multiplier = 100.0\n\
         [failover]\nhealthy_after = 1000\nunhealthy_after = 1000\n\
         [retry_budget]\nwindow = \"1h\"\nmin_per_second = 100000.0\nratio = 1000.0\n",
    ))
    .unwrap();
    assert_eq!(config.pool.max_size, 1000);
    assert_eq!(config.breaker.window(), WindowKind::Count(10_000));
}

#[test]
fn login_fields_are_limited_to_what_the_tds_login_carries() {
    let region = |field: &str, value: &str| {
        let mut r = RegionConfig {
            name: "westeurope".into(),
            host: Some("db.example.com".into()),
            user: Some("app".into()),
            password: Some(Secret::new(PASSWORD)),
            ..RegionConfig::default()
        };
        match field {
            "host" => r.host = Some(value.into()),
            "instance_name" => r.instance_name = Some(value.into()),
            "database" => r.database = Some(value.into()),
            "user" => r.user = Some(value.into()),
            "password" => r.password = Some(Secret::new(value)),
            "application_name" => r.application_name = Some(value.into()),
            _ => unreachable!(),
        }
        r
    };
    // A 70,000-character application name garbled the login packet.
    let e = region("application_name", &"a".repeat(70_000))
        .validate()
        .unwrap_err();
    assert_eq!(e.field(), "application_name");
    assert!(
        e.to_string().ends_with(
            "must be at most 128 characters (the limit of the TDS login packet); it has 70000"
        ),
        "{e}"
    );
    assert!(e.to_string().len() < 250, "echoed whole: {e}");
    for field in ["host", "database", "user", "application_name"] {
        region(field, &"a".repeat(128)).validate().unwrap();
        let e = region(field, &"a".repeat(129)).validate().unwrap_err();
        assert_eq!(e.field(), field, "{e}");
        // TDS counts UTF-16 code units: 65 characters outside the BMP are 130.
        if field != "host" {
            region(field, &"𝄞".repeat(64)).validate().unwrap();
            let e = region(field, &"𝄞".repeat(65)).validate().unwrap_err();
            assert!(e.to_string().contains("it has 130"), "{e}");
        }
    }
    region("password", &"p".repeat(128)).validate().unwrap();
    let e = region("password", &"p".repeat(129)).validate().unwrap_err();
    assert_eq!(e.to_string(), "invalid `password` = ***: must be at most 128 characters (the limit of the TDS login packet); it has 129");
    region("instance_name", "SQLEXPRESS2022_1")
        .validate()
        .unwrap();
    let e = region("instance_name", "SQLEXPRESS2022_12")
        .validate()
        .unwrap_err();
    assert_eq!(e.field(), "instance_name");
    assert!(e.to_string().contains("at most 16 characters"), "{e}");

    // The same rules apply to tiberius_config(), a public constructor of its own.
    let e = region("database", &"d".repeat(129))
        .tiberius_config()
        .unwrap_err();
    assert_eq!(e.field(), "database");

    // And from a file, naming the index.
    let e = err(&minimal(&format!(
        "application_name = \"{}\"\n",
        "x".repeat(70_000)
    )));
    assert_eq!(e.field(), "regions[0].application_name");
}

#[test]
fn control_characters_whitespace_and_empty_strings_are_rejected() {
    for (line, field, reason) in [
        (
            "host = \"db\\u0000.example.com\"",
            "host",
            "must not contain control characters",
        ),
        (
            "host = \"db.example.com\\u0000\"",
            "host",
            "must not contain control characters",
        ),
        (
            "host = \"db .example.com\"",
            "host",
            "must not contain whitespace",
        ),
        (
            "database = \"app\\u0000x\"",
            "database",
            "must not contain control characters",
        ),
        (
            "database = \"\"",
            "database",
            "must not be empty (leave it unset instead)",
        ),
        (
            "user = \"\"",
            "user",
            "must not be empty (leave it unset instead)",
        ),
        (
            "user = \"a\\nb\"",
            "user",
            "must not contain control characters",
        ),
        (
            "application_name = \"app\\u0007\"",
            "application_name",
            "must not contain control characters",
        ),
        ("instance_name = \"\"", "instance_name", "must not be empty"),
        (
            "instance_name = \"SQL EXPRESS\"",
            "instance_name",
            "must not contain whitespace",
        ),
        (
            "password = \"pw\\u0000\"",
            "password",
            "must not contain control characters",
        ),
    ] {
        // `minimal` sets host/user/password first; a later key of the same name would be a
        // duplicate, so build the region here.
        let mut fields = vec![
            ("name", "\"westeurope\"".to_owned()),
            ("host", "\"db.example.com\"".to_owned()),
            ("user", "\"app\"".to_owned()),
            ("password", format!("\"{PASSWORD}\"")),
        ];
        let (key, value) = line.split_once(" = ").unwrap();
        match fields.iter_mut().find(|(k, _)| *k == key) {
            Some(slot) => slot.1 = value.to_owned(),
            None => fields.push((key, value.to_owned())),
        }
        let text: String = std::iter::once("[[regions]]\n".to_owned())
            .chain(fields.iter().map(|(k, v)| format!("{k} = {v}\n")))
            .collect();
        let e = err(&text);
        assert_eq!(e.field(), format!("regions[0].{field}"), "{line}: {e}");
        assert!(e.to_string().contains(reason), "{line}: {e}");
        assert_no_secret(&e.to_string());
        assert!(!e.to_string().contains('\0'), "{line}: {e}");
    }
}

#[test]
fn region_names_are_bounded() {
    let name = |n: &str| minimal("").replace("westeurope", n);
    let e = err(&name(&"a".repeat(100_000)));
    assert_eq!(e.field(), "regions[0].name");
    assert!(
        e.to_string().ends_with(
            "must be at most 64 characters (it is used as a metric label); it has 100000"
        ),
        "{e}"
    );
    assert!(e.to_string().len() < 250, "echoed whole: {e}");
    Config::from_toml_str(&name(&"a".repeat(64))).unwrap();
    assert_eq!(err(&name(&"a".repeat(65))).field(), "regions[0].name");
}

#[test]
fn connection_string_login_fields_are_limited_and_never_shown() {
    let pw = format!("password={PASSWORD}");
    for (cs, key) in [
        (
            format!("server=tcp:{}.example.com,1433;{pw}", "h".repeat(130)),
            "server",
        ),
        (format!("server=tcp:h\\\\{};{pw}", "I".repeat(17)), "server"),
        (
            format!("server=tcp:h;database={};{pw}", "d".repeat(129)),
            "database",
        ),
        (
            format!("server=tcp:h;initial catalog={};{pw}", "d".repeat(129)),
            "database",
        ),
        (
            format!("server=tcp:h;user id={};{pw}", "u".repeat(129)),
            "user id",
        ),
        (
            format!("server=tcp:h;uid=u;password={PASSWORD}{}", "p".repeat(129)),
            "password",
        ),
        (
            format!("server=tcp:h;application name={};{pw}", "a".repeat(129)),
            "application name",
        ),
    ] {
        let e = err(&cs_region(&cs, ""));
        assert_eq!(e.field(), "regions[0].connection_string", "{cs}: {e}");
        assert_eq!(e.value(), "***");
        assert!(e.to_string().contains(&format!("its `{key}`")), "{cs}: {e}");
        assert_no_secret(&e.to_string());
    }
    let long = format!("server=tcp:h;{pw};x={}", "x".repeat(5000));
    let e = err(&cs_region(&long, ""));
    assert_eq!(
        e.to_string(),
        format!(
            "invalid `regions[0].connection_string` = ***: must be at most 4096 characters; it has {}",
            long.chars().count()
        )
    );
    let e = err(&cs_region(&format!("server=tcp:h;{pw}\\u0000"), ""));
    assert!(e.to_string().contains("control characters"), "{e}");
    assert_no_secret(&e.to_string());
    // The limits themselves are fine.
    Config::from_toml_str(&cs_region(
        &format!(
            "server=tcp:{}\\\\{},1433;database={};user id={};{pw}",
            "h".repeat(128),
            "I".repeat(16),
            "d".repeat(128),
            "u".repeat(128)
        ),
        "",
    ))
    .unwrap();
}

#[test]
fn numbers_too_large_for_toml_name_their_field() {
    // It used to be reported on `toml`, with the number echoed whole.
    let e = section_error("retry", "max_attempts = 99999999999999999999");
    assert_eq!(e.field(), "retry.max_attempts");
    assert_eq!(e.value(), "99999999999999999999");
    assert_eq!(
        e.to_string(),
        "invalid `retry.max_attempts` = 99999999999999999999: is out of range: a TOML integer must fit in 64 bits (line 7, column 16)"
    );
    let e = section_error("retry", &format!("max_attempts = {}", "9".repeat(100_000)));
    assert_eq!(e.field(), "retry.max_attempts");
    assert_eq!(e.value().chars().count(), 64);
    assert!(
        e.to_string().contains("a TOML integer must fit in 64 bits"),
        "{e}"
    );
    assert!(e.to_string().len() < 250, "echoed whole: {e}");
    let e = section_error("retry_budget", "ratio = 1e999");
    assert_eq!(e.field(), "retry_budget.ratio");
    assert!(e.to_string().contains("a TOML float must be finite"), "{e}");
    // A dotted key at the top level, and a key of the second region.
    let e = err(&format!(
        "retry.max_attempts = -99999999999999999999\n{}",
        minimal("")
    ));
    assert_eq!(e.field(), "retry.max_attempts");
    let e = err(&format!(
        "{}[[regions]]\nname = \"b\"\nport = 99999999999999999999\n",
        minimal("")
    ));
    assert_eq!(e.field(), "regions[1].port");
    // An unquoted numeric password too large to parse is never shown.
    let e = err(
        "[[regions]]\nname = \"a\"\nhost = \"h\"\nuser = \"u\"\npassword = 98765432109876543210\n",
    );
    assert_eq!(e.field(), "regions[0].password");
    assert_eq!(e.value(), "***");
    assert!(!e.to_string().contains("98765"), "{e}");
    // Inside an inline table the key is not known: the number is not shown either.
    let e = err("regions = [{ name = \"a\", password = 98765432109876543210 }]\n");
    assert_eq!(e.field(), "toml");
    assert!(!e.to_string().contains("98765"), "{e}");

    // Within 64 bits but not the field's type: the range in words.
    assert_eq!(
        section_error("retry", "max_attempts = 9999999999").to_string(),
        "invalid `retry.max_attempts` = 9999999999: must be a whole number from 0 to 4294967295"
    );
    assert_eq!(
        section_error("pool", "max_size = -1").to_string(),
        "invalid `pool.max_size` = -1: must be a whole number from 0 to 4294967295"
    );
    // From the environment: the variable is named too.
    let e = Config::from_toml_with_env(
        &minimal(""),
        env(&[(
            "MSSQL_RESILIENCE__RETRY__MAX_ATTEMPTS",
            "99999999999999999999",
        )]),
    )
    .unwrap_err();
    assert_eq!(e.field(), "retry.max_attempts");
    assert!(
        e.to_string().ends_with(
            "must be a whole number from 0 to 4294967295 (from `MSSQL_RESILIENCE__RETRY__MAX_ATTEMPTS`)"
        ),
        "{e}"
    );
}

#[test]
fn huge_values_are_never_echoed_whole() {
    let huge = "9".repeat(100_000);
    // A 100,000-digit duration, from the file and from the environment.
    for e in [
        section_error("timeouts", &format!("total = \"{huge}s\"")),
        Config::from_toml_with_env(
            &minimal(""),
            env(&[("MSSQL_RESILIENCE__TIMEOUTS__TOTAL", &format!("{huge}s"))]),
        )
        .unwrap_err(),
    ] {
        assert_eq!(e.field(), "timeouts.total");
        assert_eq!(e.value().chars().count(), 64, "{}", e.value());
        assert!(e.value().ends_with("99s\""), "{}", e.value());
        assert!(e.to_string().len() < 300, "echoed whole: {e}");
    }
    // Messages that quote the value are cut too.
    let big = "x".repeat(100_000);
    for (section, line) in [
        ("retry", format!("jitter = \"{big}\"")),
        ("retry", format!("max_attempts = \"{big}\"")),
        ("retry", format!("base = \"5{big}\"")),
    ] {
        let e = section_error(section, &line);
        assert!(e.to_string().len() < 400, "echoed whole: {e}");
    }
    let e = err(&minimal(&format!("role = \"{big}\"\n")));
    assert_eq!(e.field(), "regions[0].role");
    assert!(e.to_string().len() < 400, "echoed whole: {e}");
    let e = err(&minimal(&format!("{big} = 1\n")));
    // The message lists the region's known fields, so its bound grows with them.
    assert!(e.to_string().len() < 500, "echoed whole: {e}");
}

#[test]
fn a_slow_call_duration_no_call_can_reach_is_rejected() {
    assert_eq!(
        message("[breaker]\nslow_call_duration = \"5s\"\n"),
        "invalid `breaker.slow_call_duration` = 5s: must be less than `timeouts.total` (5s): no call lasts that long, so the slow-call rule could never fire"
    );
    // The default follows a short budget instead of failing it.
    Config::from_toml_str(&minimal(
        "[timeouts]\ntotal = \"1s\"\nattempt = \"1s\"\nconnect = \"1s\"\n",
    ))
    .unwrap();
    Config::from_toml_str(&minimal("[breaker]\nslow_call_duration = \"4s\"\n")).unwrap();
}
