//! Config errors name the file, line, column and path of every problem.

use bourse_kernel::{ConfigError, ConfigErrors};
use pretty_assertions::assert_eq;

use crate::support::{Probe, kernel};

fn errors(text: &str) -> Vec<ConfigError> {
    let probe = Probe::new();
    match kernel(&probe).load_config_str(text, "test.toml") {
        Ok(_) => panic!("config should have been refused"),
        Err(ConfigErrors(errors)) => errors,
    }
}

fn one(text: &str) -> ConfigError {
    let mut list = errors(text);
    assert_eq!(list.len(), 1, "{list:#?}");
    list.remove(0)
}

#[test]
fn syntax_error_names_its_line() {
    let error = one("[server]\nshutdown_grace_ms = 10\nlisten = \"127.0.0.1:0\n\n[log]\n");
    assert_eq!((error.file.as_str(), error.line), ("test.toml", 3));
    assert_eq!(error.path, "");
    assert!(error.to_string().starts_with("test.toml:3:"), "{error}");
}

#[test]
fn type_error_in_plugin_table_points_at_the_value() {
    let error = one("[plugins.alpha]\nreply = \"ok\"\ntimeout = \"abc\"\n");
    assert_eq!((error.line, error.column), (3, 11));
    assert_eq!(error.path, "plugins.alpha.timeout");
    assert!(error.message.contains("expected u64"), "{}", error.message);
    assert_eq!(
        error.to_string(),
        format!("test.toml:3:11: plugins.alpha.timeout: {}", error.message)
    );
}

#[test]
fn validate_issue_points_at_the_array_element() {
    let text = "\
[plugins.alpha]
reply = \"ok\"

[[plugins.alpha.bidders]]
endpoint = \"http://one\"

[[plugins.alpha.bidders]]
endpoint = \"https://two\"

[[plugins.alpha.bidders]]
endpoint = \"ftp://three\"
";
    let error = one(text);
    assert_eq!(error.path, "plugins.alpha.bidders[2].endpoint");
    assert_eq!((error.line, error.column), (11, 12));
    assert_eq!(error.message, "must be an http(s) URL");
}

#[test]
fn unknown_key_in_server_is_an_error() {
    let error = one("[server]\nlisten = \"127.0.0.1:0\"\nlisten_port = 8080\n");
    assert_eq!(error.line, 3);
    assert_eq!(error.path, "server.listen_port");
    assert!(
        error.message.contains("unknown field `listen_port`"),
        "{}",
        error.message
    );
}

#[test]
fn unknown_key_in_plugin_table_is_an_error() {
    let error = one("[plugins.beta]\nreplly = \"typo\"\n");
    assert_eq!(
        (error.line, error.path.as_str()),
        (2, "plugins.beta.replly")
    );
    assert!(
        error.message.contains("unknown field `replly`"),
        "{}",
        error.message
    );
}

#[test]
fn unknown_plugin_table_is_an_error() {
    let error = one("[plugins.alpha]\n\n[plugins.gamma]\nreply = \"x\"\n");
    assert_eq!((error.line, error.column), (3, 1));
    assert_eq!(error.path, "plugins.gamma");
    assert!(
        error.message.contains("unknown plugin `gamma`"),
        "{}",
        error.message
    );
    assert!(
        error.message.contains("`alpha`, `beta`"),
        "{}",
        error.message
    );
}

#[test]
fn unknown_top_level_key_is_an_error() {
    let error = one("\n\nwhat = 1\n");
    assert_eq!((error.line, error.path.as_str()), (3, "what"));
}

#[test]
fn missing_required_field_points_at_its_table() {
    let error = one("[plugins.alpha]\n\n[[plugins.alpha.bidders]]\nname = \"no endpoint\"\n");
    // The first problem serde meets in this element is either the unknown or the missing key;
    // both live in the table that starts on line 3.
    assert!(
        error.path.starts_with("plugins.alpha.bidders[0]"),
        "{}",
        error.path
    );
    assert!(error.line == 3 || error.line == 4, "{error}");

    let error = one("[plugins.alpha]\n\n[[plugins.alpha.bidders]]\n");
    assert_eq!(error.path, "plugins.alpha.bidders[0]");
    assert_eq!(error.line, 3);
    assert!(
        error.message.contains("missing field `endpoint`"),
        "{}",
        error.message
    );
}

#[test]
fn every_table_reports_its_own_error() {
    let text = "\
[server]
listen = \"not an address\"

[log]
level = \"info\"
format = \"xml\"

[plugins.alpha]
timeout = -1

[plugins.beta]
bidders = [{ endpoint = \"gopher://x\" }]

[plugins.nope]
";
    let errors = errors(text);
    let found: Vec<(usize, &str)> = errors.iter().map(|e| (e.line, e.path.as_str())).collect();
    assert_eq!(
        found,
        vec![
            (2, "server.listen"),
            (6, "log.format"),
            (9, "plugins.alpha.timeout"),
            (12, "plugins.beta.bidders[0].endpoint"),
            (14, "plugins.nope"),
        ]
    );
    let display = ConfigErrors(errors).to_string();
    assert_eq!(display.lines().count(), 5, "{display}");
}

#[test]
fn invalid_log_level_is_an_error() {
    let error = one("[log]\nlevel = \"bourse=loud\"\n");
    assert_eq!((error.line, error.path.as_str()), (2, "log.level"));
}

#[test]
fn an_empty_config_uses_defaults_and_runs_no_plugin() {
    let probe = Probe::new();
    let kernel = kernel(&probe);
    let config = kernel.load_config_str("", "empty.toml").unwrap();
    assert_eq!(config.server, bourse_kernel::ServerConfig::default());
    assert_eq!(config.server.listen.to_string(), "127.0.0.1:8080");
    assert_eq!(config.log.format, bourse_kernel::LogFormat::Json);
    assert!(config.plugin_names().is_empty());
    assert!(config.plugin_table("alpha").is_none());
    // An empty table runs the plugin with its defaults.
    let config = kernel
        .load_config_str("[plugins.alpha]\n", "alpha.toml")
        .unwrap();
    assert_eq!(config.plugin_names(), ["alpha"]);
    assert!(config.plugin_table("alpha").unwrap().is_empty());
}

#[test]
fn config_file_errors_name_the_file() {
    let dir = std::env::temp_dir().join(format!("bourse-kernel-it-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("bad.toml");
    std::fs::write(&path, "[plugins.alpha]\ntimeout = true\n").unwrap();
    let probe = Probe::new();
    let ConfigErrors(errors) = kernel(&probe).load_config_file(&path).unwrap_err();
    assert_eq!(errors[0].file, path.display().to_string());
    assert_eq!(errors[0].line, 2);

    let missing = kernel(&probe)
        .load_config_file(&dir.join("missing.toml"))
        .unwrap_err();
    assert!(
        missing.to_string().contains("cannot read config file"),
        "{missing}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[cfg(feature = "etcd")]
#[test]
fn bad_etcd_settings_point_at_their_values() {
    let text = "\
[server.etcd]
endpoints = [\"http://127.0.0.1:2379\", \"127.0.0.1:2380\"]
key = \"\"
";
    let found = errors(text);
    let located: Vec<(&str, usize)> = found.iter().map(|e| (e.path.as_str(), e.line)).collect();
    assert_eq!(
        located,
        [("server.etcd.endpoints[1]", 2), ("server.etcd.key", 3)]
    );
    assert!(
        found[0].message.contains("http://host:port"),
        "{}",
        found[0].message
    );
}

#[cfg(not(feature = "etcd"))]
#[test]
fn etcd_settings_in_a_build_without_etcd_say_how_to_get_it() {
    let found = errors("[server.etcd]\nkey = \"/bourse/config\"\n");
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!((found[0].path.as_str(), found[0].line), ("server.etcd", 1));
    assert!(
        found[0].message.contains("--features etcd"),
        "{}",
        found[0].message
    );
}
