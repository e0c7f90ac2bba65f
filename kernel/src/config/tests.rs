use super::*;

#[test]
fn paths_round_trip() {
    let path = parse_path("plugins.exchange.bidders[2].endpoint");
    assert_eq!(
        path,
        vec![
            PathSegment::Key("plugins".into()),
            PathSegment::Key("exchange".into()),
            PathSegment::Key("bidders".into()),
            PathSegment::Index(2),
            PathSegment::Key("endpoint".into()),
        ]
    );
    assert_eq!(format_path(&path), "plugins.exchange.bidders[2].endpoint");
    assert_eq!(format_path(&parse_path("a[0][1]")), "a[0][1]");
    assert_eq!(format_path(&[PathSegment::Key("a.b".into())]), "\"a.b\"");
}

#[test]
fn line_col_counts_characters_from_one() {
    let text = "a = 1\nbé = \"x\"\n";
    assert_eq!(line_col(text, 0), (1, 1));
    assert_eq!(line_col(text, 6), (2, 1));
    let quote = text.find('"').unwrap();
    assert_eq!(line_col(text, quote), (2, 6));
}

fn at(text: &str, path: &str) -> (usize, usize) {
    let doc = toml_edit::Document::parse(text).unwrap();
    let span = locate(&doc, &parse_path(path)).unwrap();
    line_col(text, span.start)
}

#[test]
fn locate_finds_values_in_arrays_of_tables_and_inline_arrays() {
    let text = "\
[plugins.x]
a = 1

[[plugins.x.bidders]]
endpoint = \"one\"

[[plugins.x.bidders]]
endpoint = \"two\"

[plugins.y]
list = [1, { deep = true }]
";
    assert_eq!(at(text, "plugins.x.a"), (2, 5));
    assert_eq!(at(text, "plugins.x.bidders[1].endpoint"), (8, 12));
    assert_eq!(at(text, "plugins.x.bidders[1]"), (7, 1));
    assert_eq!(at(text, "plugins.y.list[1].deep"), (11, 21));
}

#[test]
fn locate_falls_back_to_the_nearest_existing_parent() {
    let text = "[server]\nlisten = \"127.0.0.1:0\"\n\n[plugins.x]\nother = 1\n";
    assert_eq!(at(text, "plugins.x.missing"), (4, 1));
    assert_eq!(at(text, "plugins.x.bidders[3].endpoint"), (4, 1));
}

/// Regression: toml_edit 0.23 panicked ("all items have spans") while recovering from this
/// syntax error (found by fuzz/'s config target); it is reported like any other.
#[test]
fn a_syntax_error_toml_edit_panics_on_is_reported() {
    let registered = Registered {
        kinds: Vec::new(),
        extensions: Vec::new(),
    };
    let errors = load_str(&registered, "==\n[.", "broken.toml", PathBuf::new()).unwrap_err();
    assert_eq!(errors.0.len(), 1, "{errors}");
    assert_eq!(
        (errors.0[0].file.as_str(), errors.0[0].line),
        ("broken.toml", 1)
    );
}
