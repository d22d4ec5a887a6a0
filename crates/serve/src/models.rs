//! The loaded model directories, by name.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use candle_core::Device;
use seqlab_train::model_dir::task_of;
use seqlab_train::{
    load_captioner, load_classifier, load_lm, load_translator, LoadedCaptioner, LoadedClassifier,
    LoadedTranslator,
};

use crate::error::ApiError;
use crate::lm::LmWorker;

/// One loaded model directory.
#[derive(Debug)]
pub struct Model {
    /// Its name in the API: the directory's last component.
    pub name: String,
    /// Where it was loaded from.
    pub dir: PathBuf,
    /// When `config.json` was last written, in seconds since the epoch (the API's `created`).
    pub created: u64,
    /// The loaded model.
    pub task: Task,
}

/// A loaded model of one of the four tasks.
#[derive(Debug)]
pub enum Task {
    /// A language model, served through its generation worker.
    Lm(LmWorker),
    /// A translator.
    Translate(Arc<LoadedTranslator>),
    /// A captioner.
    Caption(Arc<LoadedCaptioner>),
    /// A classifier.
    Classify(Arc<LoadedClassifier>),
}

impl Task {
    /// The task's name, as `config.json` writes it.
    pub fn name(&self) -> &'static str {
        match self {
            Task::Lm(_) => seqlab_train::TASK,
            Task::Translate(_) => "translate",
            Task::Caption(_) => "caption",
            Task::Classify(_) => "classify",
        }
    }

    /// The endpoint that serves the task.
    pub fn endpoint(&self) -> &'static str {
        match self {
            Task::Lm(_) => "/v1/completions",
            Task::Translate(_) => "/v1/translate",
            Task::Caption(_) => "/v1/caption",
            Task::Classify(_) => "/v1/classify",
        }
    }
}

/// Every loaded model, by name.
#[derive(Debug, Default)]
pub struct Models {
    by_name: BTreeMap<String, Model>,
}

impl Models {
    /// Loads the model directories `dirs` (any task), each language model with a generation worker that
    /// batches up to `max_batch` requests into one step. Two directories of one name are an error, as is a
    /// directory that does not load (the error names it).
    pub fn load(dirs: &[PathBuf], max_batch: usize) -> anyhow::Result<Models> {
        let mut models = Models::default();
        for dir in dirs {
            let model = load_one(dir, max_batch)?;
            if let Some(other) = models.by_name.get(&model.name) {
                anyhow::bail!(
                    "--model {} and --model {} have one name, {:?}: the API names a model by its \
                     directory's last component",
                    other.dir.display(),
                    dir.display(),
                    model.name
                );
            }
            models.by_name.insert(model.name.clone(), model);
        }
        Ok(models)
    }

    /// The model called `name`, or a 404 naming the loaded ones.
    pub fn get(&self, name: &str) -> Result<&Model, ApiError> {
        self.by_name
            .get(name)
            .ok_or_else(|| ApiError::unknown_model(name, &self.names()))
    }

    /// The model of the request's `model` field, which must be of `task`, or the only model of the task
    /// when the field is absent.
    pub fn pick(&self, name: Option<&str>, task: &str) -> Result<&Model, ApiError> {
        match name {
            Some(name) => {
                let model = self.get(name)?;
                if model.task.name() != task {
                    return Err(ApiError::invalid(
                        "model",
                        format!(
                            "model {:?} is a {} model; send it to {}",
                            model.name,
                            model.task.name(),
                            model.task.endpoint()
                        ),
                    ));
                }
                Ok(model)
            }
            None => {
                let mut of_task = self.iter().filter(|m| m.task.name() == task);
                match (of_task.next(), of_task.next()) {
                    (Some(model), None) => Ok(model),
                    _ => Err(ApiError::invalid(
                        "model",
                        format!(
                            "name the model: this server has {} {task} models",
                            self.iter().filter(|m| m.task.name() == task).count()
                        ),
                    )),
                }
            }
        }
    }

    /// The names, in order.
    pub fn names(&self) -> Vec<String> {
        self.by_name.keys().cloned().collect()
    }

    /// The models, by name.
    pub fn iter(&self) -> impl Iterator<Item = &Model> {
        self.by_name.values()
    }

    /// Number of models.
    pub fn len(&self) -> usize {
        self.by_name.len()
    }

    /// Whether no model is loaded.
    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }
}

fn load_one(dir: &Path, max_batch: usize) -> anyhow::Result<Model> {
    let device = Device::Cpu;
    let name = dir
        .canonicalize()
        .unwrap_or_else(|_| dir.to_path_buf())
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "model".to_string());
    let task = match task_of(dir)?.as_str() {
        seqlab_train::TASK => Task::Lm(LmWorker::start(
            &name,
            Arc::new(load_lm(dir, &device)?),
            max_batch,
        )?),
        "translate" => Task::Translate(Arc::new(load_translator(dir, &device)?)),
        "caption" => Task::Caption(Arc::new(load_captioner(dir, &device)?)),
        "classify" => Task::Classify(Arc::new(load_classifier(dir, &device)?)),
        other => anyhow::bail!(
            "{}: task {other:?} in its config.json is none that seqlab serves",
            dir.display()
        ),
    };
    let created = std::fs::metadata(dir.join("config.json"))
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_secs());
    Ok(Model {
        name,
        dir: dir.to_path_buf(),
        created,
        task,
    })
}
