//! The ipvsadm command parser, `apply`, the listings, and ipvsadm-save /
//! restore, over the fuzz director's model.
//!
//! Beyond "no panic": the text as rules is restored all or nothing (a
//! refused restore leaves the model as it was); each line as a command
//! line is parsed and applied the same way (a refused command changes
//! nothing; a usage error says something); what `-S` saves restores, on
//! a model with the same network and groups, to the same `-S` output.

use super::frames::CONFIG;
use crate::ctl::config;
use crate::ctl::ipvsadm::{self, Outcome, StatsView, View};
use crate::ctl::model::Model;
use std::sync::OnceLock;

fn base() -> &'static Model {
    static M: OnceLock<Model> = OnceLock::new();
    M.get_or_init(|| config::load_str(CONFIG, "fuzz/director.toml").expect("the fuzz director's configuration loads"))
}

/// Runs an ipvsadm text (rules, and command lines one per line). Panics
/// when an invariant breaks (see the module docs).
pub fn run(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let _ = ipvsadm::parse_rules(text);
    let mut model = base().clone();
    if ipvsadm::restore(&mut model, text).is_err() {
        assert!(model == *base(), "a refused restore changed the model");
    }
    let stats = StatsView::default();
    let view = View { stats: &stats, conns: &[], table_size: ipvsadm::TABLE_SIZE };
    for line in text.lines().take(64) {
        let words: Vec<&str> = line.split_whitespace().collect();
        match ipvsadm::parse(&words) {
            Ok(cmd) => {
                let before = model.clone();
                match ipvsadm::apply(&mut model, &cmd) {
                    Ok(Outcome::Query) => {
                        let _ = ipvsadm::render(&cmd, &model, &view);
                    }
                    Ok(_) => {}
                    Err(e) => {
                        assert!(model == before, "a refused command changed the model: {e}");
                        assert!(!e.to_string().is_empty(), "an empty error");
                    }
                }
            }
            Err(e) => assert!(!e.message.is_empty(), "an empty usage error for {words:?}"),
        }
    }
    let saved = ipvsadm::save(&model);
    let mut back = Model { net: model.net.clone(), groups: model.groups.clone(), ..Model::default() };
    if let Err(e) = ipvsadm::restore(&mut back, &saved) {
        panic!("-S output does not restore: {e}\n{saved}");
    }
    assert_eq!(ipvsadm::save(&back), saved, "save -> restore -> save differs");
}
