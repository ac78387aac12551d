//! The exercise catalogue: `exercises/catalogue.toml` and the Markdown
//! briefings beside it, built into the binary.
//!
//! This is the *description* of the workshop; what an attendee has done is
//! in [`super::progress`].

use include_dir::{include_dir, Dir};

/// The `exercises/` folder, embedded at build time.
static EXERCISES: Dir<'static> = include_dir!("$CARGO_MANIFEST_DIR/exercises");
const CATALOGUE_FILE: &str = "catalogue.toml";
/// The catalogue format this binary reads.
/// Version 2 added `[[exercise.variant]]` with its `prompt` and `question`.
pub const FORMAT_VERSION: u32 = 2;
/// The text a variant's `prompt` answer replaces in its `args`.
pub const INPUT_PLACEHOLDER: &str = "{input}";

#[derive(Debug, Clone, serde::Deserialize, serde::Serialize)]
pub struct Catalogue {
    pub format_version: u32,
    #[serde(rename = "exercise")]
    pub exercises: Vec<Exercise>,
}

#[derive(Debug, Clone, PartialEq, serde::Deserialize, serde::Serialize)]
pub struct Exercise {
    pub id: String,
    pub number: u32,
    pub title: String,
    /// File name of the Markdown briefing in `exercises/`.
    pub briefing: String,
    /// The subcommand and its default arguments, as typed after `workshop-cli`.
    pub command: Vec<String>,
    /// The `just` recipe that runs it.
    pub recipe: String,
    pub hints: Vec<String>,
    /// The runs the briefing talks about; none means one: `command`.
    #[serde(default, rename = "variant")]
    pub variants: Vec<Variant>,
    /// `workshop-cli grade` can judge the learner's own code for this
    /// exercise: `cache-aside`, `write-through` (a script) or `service`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grader: Option<String>,
}

impl Exercise {
    /// "Grade my code": the Markdown the guided app shows under the briefing
    /// of an exercise that has a grader, with the command that grades it.
    pub fn grade_offer(&self) -> Option<String> {
        let command = match self.grader.as_deref()? {
            "service" => "workshop-cli grade service -- python3 my_app.py --port {port}".to_string(),
            script => format!(
                "workshop-cli grade script --exercise {script} -- python3 my_{}.py",
                script.replace('-', "_")
            ),
        };
        Some(format!(
            "## Grade my code\n\nWrote your own? `workshop-cli grade` runs it and judges it by what the \
             database and Valkey saw (README: \"Grading your own code\"); put your command after `--`:\n\n\
             ```\n{command}\n```\n"
        ))
    }
}

/// One run of an exercise the guided app offers (a key picks it).
#[derive(Debug, Clone, PartialEq, serde::Deserialize, serde::Serialize)]
pub struct Variant {
    /// What the learner sees: "the busiest routes".
    pub label: String,
    /// The subcommand and its arguments, as typed after `workshop-cli`.
    pub args: Vec<String>,
    /// Asked before the run; the answer replaces `{input}` in `args`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt: Option<String>,
    /// A run started first and shown beside this one (`multi-level --listen
    /// --duration S`): the variant runs once it listens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alongside: Option<Vec<String>>,
    /// Predict, then run: asked before the run, checked against its outcome.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub question: Option<Question>,
}

#[derive(Debug, Clone, PartialEq, serde::Deserialize, serde::Serialize)]
pub struct Question {
    pub ask: String,
    /// The number or name the outcome answers with (see `workshop::facts`).
    pub fact: String,
    pub choices: Vec<Choice>,
}

/// One answer: right when the fact is a number in `min..=max` (either
/// bound may be left out) or a name equal to `is`.
#[derive(Debug, Clone, PartialEq, serde::Deserialize, serde::Serialize)]
pub struct Choice {
    pub label: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub is: Option<String>,
}

impl Choice {
    pub fn matches_number(&self, value: f64) -> bool {
        self.is.is_none() && self.min.is_none_or(|min| value >= min) && self.max.is_none_or(|max| value <= max)
    }

    pub fn matches_name(&self, value: &str) -> bool {
        self.is.as_deref() == Some(value)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CatalogueError {
    #[error("the built-in exercise catalogue is missing")]
    Missing,
    #[error("the built-in exercise catalogue does not parse: {0}")]
    Malformed(String),
    #[error("the exercise catalogue has format version {found}; this workshop-cli reads version {FORMAT_VERSION}")]
    Version { found: u32 },
}

impl Catalogue {
    /// The catalogue built into this binary.
    pub fn builtin() -> Result<Catalogue, CatalogueError> {
        let text = EXERCISES
            .get_file(CATALOGUE_FILE)
            .and_then(|f| f.contents_utf8())
            .ok_or(CatalogueError::Missing)?;
        Catalogue::parse(text)
    }

    pub fn parse(text: &str) -> Result<Catalogue, CatalogueError> {
        let catalogue: Catalogue = toml::from_str(text).map_err(|e| CatalogueError::Malformed(e.to_string()))?;
        if catalogue.format_version != FORMAT_VERSION {
            return Err(CatalogueError::Version {
                found: catalogue.format_version,
            });
        }
        Ok(catalogue)
    }

    /// An exercise by number (`1`) or id (`cache-aside`).
    pub fn find(&self, wanted: &str) -> Option<&Exercise> {
        let wanted = wanted.trim();
        self.exercises
            .iter()
            .find(|e| e.id == wanted || e.number.to_string() == wanted)
    }

    /// The exercise after `id`, if any.
    pub fn next_after(&self, id: &str) -> Option<&Exercise> {
        let position = self.exercises.iter().position(|e| e.id == id)?;
        self.exercises.get(position + 1)
    }
}

impl Exercise {
    /// The briefing text, from the embedded `exercises/` folder.
    pub fn briefing_text(&self) -> Option<&'static str> {
        EXERCISES.get_file(&self.briefing).and_then(|f| f.contents_utf8())
    }

    /// The runs to offer: the catalogue's variants, or the one `command`.
    pub fn runs(&self) -> Vec<Variant> {
        if !self.variants.is_empty() {
            return self.variants.clone();
        }
        vec![Variant {
            label: "the default run".into(),
            args: self.command.clone(),
            prompt: None,
            alongside: None,
            question: None,
        }]
    }

    /// The command line as a person would type it.
    pub fn command_line(&self) -> String {
        command_line(&self.command)
    }
}

/// `workshop-cli` and `args`, quoted where an argument has a space.
pub fn command_line(args: &[String]) -> String {
    let mut line = String::from("workshop-cli");
    for arg in args {
        line.push(' ');
        if arg.contains(char::is_whitespace) {
            line.push_str(&format!("'{arg}'"));
        } else {
            line.push_str(arg);
        }
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    #[test]
    fn exercises_with_a_grader_offer_the_command_that_grades_them() {
        let catalogue = Catalogue::builtin().unwrap();
        let offer = |id: &str| {
            catalogue
                .exercises
                .iter()
                .find(|e| e.id == id)
                .and_then(Exercise::grade_offer)
        };
        assert!(offer("cache-aside")
            .unwrap()
            .contains("workshop-cli grade script --exercise cache-aside -- "));
        assert!(offer("write-through")
            .unwrap()
            .contains("workshop-cli grade script --exercise write-through -- "));
        assert!(offer("serve").unwrap().contains("workshop-cli grade service -- "));
        assert_eq!(offer("check-env"), None);
        for exercise in &catalogue.exercises {
            if let Some(grader) = &exercise.grader {
                assert!(
                    ["cache-aside", "write-through", "service"].contains(&grader.as_str()),
                    "{}: no grader {grader}",
                    exercise.id
                );
            }
        }
    }

    #[test]
    fn the_builtin_catalogue_parses_with_the_current_format() {
        let catalogue = Catalogue::builtin().unwrap();
        assert_eq!(catalogue.format_version, FORMAT_VERSION);
        assert!(catalogue.exercises.len() >= 7);
    }

    #[test]
    fn ids_and_numbers_are_unique_and_numbers_run_in_order() {
        let catalogue = Catalogue::builtin().unwrap();
        let ids: BTreeSet<_> = catalogue.exercises.iter().map(|e| &e.id).collect();
        assert_eq!(ids.len(), catalogue.exercises.len());
        let numbers: Vec<u32> = catalogue.exercises.iter().map(|e| e.number).collect();
        // Ascending and unique; a number may be left out while its exercise is being built.
        assert_eq!(numbers.first(), Some(&0));
        assert!(numbers.windows(2).all(|pair| pair[0] < pair[1]), "{numbers:?}");
    }

    #[test]
    fn every_briefing_exists_and_every_exercise_has_hints() {
        for exercise in Catalogue::builtin().unwrap().exercises {
            let text = exercise
                .briefing_text()
                .unwrap_or_else(|| panic!("{}: no {}", exercise.id, exercise.briefing));
            assert!(
                text.starts_with("# "),
                "{}: a briefing starts with a title",
                exercise.id
            );
            assert!(!exercise.hints.is_empty(), "{}", exercise.id);
            assert_eq!(exercise.recipe, format!("exercise-{}", exercise.number));
        }
    }

    #[test]
    fn an_unknown_format_version_is_refused() {
        let err = Catalogue::parse("format_version = 99\nexercise = []\n").unwrap_err();
        assert_eq!(
            err.to_string(),
            "the exercise catalogue has format version 99; this workshop-cli reads version 2"
        );
    }

    #[test]
    fn exercises_are_found_by_number_or_id() {
        let catalogue = Catalogue::builtin().unwrap();
        assert_eq!(catalogue.find("1").unwrap().id, "cache-aside");
        assert_eq!(catalogue.find("cache-aside").unwrap().number, 1);
        assert!(catalogue.find("99").is_none());
        assert_eq!(catalogue.next_after("cache-aside").unwrap().id, "write-through");
    }
}
