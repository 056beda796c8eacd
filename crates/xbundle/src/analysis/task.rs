//! The `analyze:<scenario>` pipeline task: writes `<out>/analysis/<scenario>.json`.
//!
//! Its inputs are discovered: exactly the definition files the analysis read, and those it
//! looked for and did not find (a resource it sized with the class table). Editing an unrelated
//! scenario leaves it cached; editing any definition in its graph, or adding a definition for a
//! resource it used the class table for, re-runs it. Planning analyzes nothing.

use std::collections::BTreeMap;
use std::sync::Arc;

use camino::Utf8PathBuf;
use engine::{Action, ActionContext, ActionFailure, ActionOutput, TaskId, TaskSpec};

use crate::analysis::{self, Catalog, Layout, Request};

/// Bump when the analysis' results change for the same inputs.
pub const ANALYZE_VERSION: u32 = 1;

pub fn task_id(scenario: &str) -> TaskId {
    TaskId::new(format!("analyze:{scenario}"))
}

struct AnalyzeAction {
    layout: Layout,
    scenario: String,
    /// Root-relative.
    output: Utf8PathBuf,
}

impl Action for AnalyzeAction {
    fn run(&self, context: &ActionContext<'_>) -> Result<ActionOutput, ActionFailure> {
        let catalog = Catalog::new(self.layout.clone());
        let request = Request {
            scenario: self.scenario.clone(),
            ..Request::default()
        };
        let result = analysis::analyze(&catalog, &request).map_err(crate::stages::failure)?;
        let mut json = serde_json::to_string_pretty(&result).expect("analyses serialize");
        json.push('\n');
        // Through the confined root: never through a link, even one swapped in after the
        // engine checked the outputs.
        let written =
            context
                .tree
                .write_file(self.output.as_str(), 0o644, |file: &mut std::fs::File| {
                    use std::io::Write;
                    file.write_all(json.as_bytes()).map_err(|source| {
                        engine::confine::ConfineError::Io {
                            path: self.output.to_string(),
                            source,
                        }
                    })
                });
        written.map_err(|err| ActionFailure {
            message: format!("writing {}: {err}", self.output),
            ..ActionFailure::default()
        })?;
        Ok(ActionOutput {
            discovered: engine::Discovered {
                files: catalog.recorded(),
                listings: Vec::new(),
            },
            ..ActionOutput::default()
        })
    }
}

/// One `analyze:<scenario>` task per scenario of the layout (nothing is read: the inputs are
/// discovered when the task runs).
pub fn specs(layout: &Layout, out: &Utf8PathBuf) -> Vec<TaskSpec> {
    layout
        .scenario_names()
        .into_iter()
        .map(|scenario| {
            let inputs = Vec::new();
            let output = analysis::output_path(out, &scenario);
            let mut params = BTreeMap::new();
            params.insert("scenario".to_string(), scenario.clone());
            params.insert(
                "implementation".to_string(),
                crate::IMPLEMENTATION.to_string(),
            );
            params.insert("scenarios".to_string(), layout.scenarios.to_string());
            params.insert("resources".to_string(), layout.resources.to_string());
            TaskSpec {
                id: task_id(&scenario),
                kind: "analyze".to_string(),
                impl_version: ANALYZE_VERSION,
                params,
                cwd: String::new(),
                inputs,
                outputs: vec![output.to_string()],
                env: Vec::new(),
                tools: BTreeMap::new(),
                deps: Vec::new(),
                action: Arc::new(AnalyzeAction {
                    layout: layout.clone(),
                    scenario: scenario.clone(),
                    output,
                }),
                description: Some(format!("Analyze scenario {scenario}")),
            }
        })
        .collect()
}
