//! The flags every `seqlab ... train` command shares, each declared once: the loop's ([`LoopArgs`]:
//! learning rate, schedule, steps, checkpoints, `--resume`, `--max-time`, `--threads`, `--device`, ...)
//! and the recurrent stack's ([`StackArgs`]: `--cell`, `--hidden`, `--layers`, `--dropout`).
//!
//! Their defaults are the pipeline's own, read from its library defaults (`P::TrainConfig::default()`,
//! `P::ModelConfig::default()`), never copied here: a flag that is not given stays `None` and the
//! pipeline's value applies, and `--help` shows that value beside each flag ([`Loop`], [`Stack`] add it).
//! Keeping "not given" apart from "the default" is what lets `--resume` change only what was given.

use std::io::Write;
use std::marker::PhantomData;
use std::path::PathBuf;

use anyhow::bail;
use clap::builder::{PossibleValue, PossibleValuesParser, TypedValueParser};
use clap::{ArgMatches, Args, Command, FromArgMatches};
use seqlab_cells::{Block, CellKind, CellOptions, RecurrentConfig};
use seqlab_train::{HasLoop, LoopConfig, NonFinite, Pipeline, RunOptions, Schedule, TrainSummary};

/// The loop's flags.
#[derive(clap::Args, Debug)]
pub struct LoopArgs {
    /// Peak learning rate of AdamW.
    #[arg(long, value_name = "F", value_parser = crate::ranges::positive("the learning rate"))]
    lr: Option<f64>,
    /// AdamW's decoupled weight decay.
    #[arg(long, value_name = "F", value_parser = crate::ranges::non_negative("the weight decay"))]
    weight_decay: Option<f64>,
    /// Largest gradient norm (0: no clipping).
    #[arg(long, value_name = "F", value_parser = crate::ranges::non_negative("the clipping norm"))]
    clip: Option<f64>,
    /// Warm-up steps of the learning rate.
    #[arg(long, value_name = "N")]
    warmup: Option<usize>,
    /// Learning-rate schedule after the warm-up: cosine (down to 10%), wsd (the peak, then a cosine down
    /// to 10% over the last 30% of the run) or constant.
    #[arg(long, value_name = "cosine|wsd|constant")]
    schedule: Option<String>,
    /// Passes over the training data.
    #[arg(long, value_name = "N", conflicts_with = "steps", value_parser = crate::ranges::at_least_one("--epochs"))]
    epochs: Option<usize>,
    /// Optimizer steps (instead of --epochs).
    #[arg(long, value_name = "N", value_parser = crate::ranges::at_least_one("--steps"))]
    steps: Option<usize>,
    /// The model directory to write.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Continue the run in --out from its latest checkpoint, with its saved settings and data (of the
    /// other flags only --steps, --epochs, --max-time, --patience, --skip-nonfinite and --threads apply).
    #[arg(long)]
    pub resume: bool,
    /// Seed of the initial weights, the dropout masks, the data order and any split of the data.
    #[arg(long, value_name = "N")]
    seed: Option<u64>,
    /// Train for this many minutes (a decimal number; the run's whole training time, counted on over
    /// --resume): the learning rate's decay follows the elapsed fraction, reaching its floor as the
    /// budget ends, and the run stops cleanly, evaluating and saving first. Without --steps or --epochs,
    /// the budget alone decides the run's length.
    #[arg(long, value_name = "MINUTES", value_parser = crate::ranges::positive("--max-time (minutes)"))]
    max_time: Option<f64>,
    /// Evaluate on the validation data (and keep the best model) every N steps.
    #[arg(long, value_name = "N")]
    eval_every: Option<usize>,
    /// Write the resumable checkpoint every N steps.
    #[arg(long, value_name = "N")]
    checkpoint_every: Option<usize>,
    /// Stop after N evaluations without a better validation loss.
    #[arg(long, value_name = "N", value_parser = crate::ranges::at_least_one("--patience"))]
    patience: Option<usize>,
    /// Worker threads [default: one per core].
    #[arg(long, value_name = "N", value_parser = crate::ranges::at_least_one("--threads"))]
    threads: Option<usize>,
    /// Skip a batch whose loss or gradient is NaN or infinite, instead of stopping the run.
    #[arg(long)]
    skip_nonfinite: bool,
    /// cpu (this build's only device).
    #[arg(long, value_name = "cpu|cuda", default_value = "cpu")]
    device: String,
}

impl LoopArgs {
    /// The loop's settings: what was given, else `defaults` (the pipeline's). On `--resume`, the run's
    /// length and patience stay unset unless given, so that the saved ones hold.
    pub fn config(&self, defaults: &LoopConfig) -> anyhow::Result<LoopConfig> {
        let schedule = match self.schedule.as_deref() {
            None => defaults.schedule,
            Some("cosine") => Schedule::default(),
            Some("constant") => Schedule::Constant,
            Some("wsd") => Schedule::WarmupStableDecay {
                decay: 0.3,
                min_ratio: 0.1,
            },
            Some(other) => bail!("unknown --schedule {other:?}: expected cosine, wsd or constant"),
        };
        let fresh = |default: Option<usize>| if self.resume { None } else { default };
        Ok(LoopConfig {
            lr: self.lr.unwrap_or(defaults.lr),
            weight_decay: self.weight_decay.unwrap_or(defaults.weight_decay),
            clip: self.clip.unwrap_or(defaults.clip),
            schedule,
            warmup: self.warmup.unwrap_or(defaults.warmup),
            epochs: self
                .epochs
                .or(if self.steps.is_some() || self.max_time.is_some() {
                    None
                } else {
                    fresh(defaults.epochs)
                }),
            steps: self.steps,
            max_time: self.max_time,
            eval_every: self.eval_every.unwrap_or(defaults.eval_every),
            checkpoint_every: self.checkpoint_every.unwrap_or(defaults.checkpoint_every),
            patience: self.patience.or(fresh(defaults.patience)),
            seed: self.seed.unwrap_or(defaults.seed),
            on_nonfinite: if self.skip_nonfinite {
                NonFinite::Skip
            } else {
                NonFinite::Stop
            },
        })
    }

    /// Applies `--threads` (before any worker thread starts) and checks `--device`, then gives the loop's
    /// run options: `--resume`, with a progress bar.
    pub fn start(&self) -> anyhow::Result<RunOptions<'static>> {
        if let Some(threads) = self.threads {
            if threads == 0 {
                bail!("--threads must be at least 1");
            }
            // Read by candle and rayon when they first start their threads, which has not happened yet.
            std::env::set_var("RAYON_NUM_THREADS", threads.to_string());
        }
        match self.device.as_str() {
            "cpu" => {}
            "cuda" => bail!("this seqlab was built without CUDA support; use --device cpu"),
            other => bail!("unknown --device {other:?}: expected cpu or cuda"),
        }
        Ok(RunOptions {
            resume: self.resume,
            progress: true,
            on_step: None,
        })
    }
}

/// The recurrent stack's flags.
#[derive(clap::Args, Debug)]
pub struct StackArgs {
    /// Recurrent cell.
    #[arg(long, value_name = "CELL", value_parser = cell_parser())]
    cell: Option<CellKind>,
    /// Units per recurrent layer (per direction when it reads both ways).
    #[arg(long, value_name = "N", value_parser = crate::ranges::at_least_one("--hidden"))]
    hidden: Option<usize>,
    /// Recurrent layers.
    #[arg(long, value_name = "N", value_parser = crate::ranges::at_least_one("--layers"))]
    layers: Option<usize>,
    /// Dropout between layers and before the head, in training.
    #[arg(long, value_name = "P", value_parser = crate::ranges::probability("the dropout"))]
    dropout: Option<f32>,
    /// How each layer is arranged around its cell: plain (PyTorch's stack) or residual (norm, cell,
    /// residual add, norm, MLP, residual add: how the minGRU and xLSTM papers stack their cells).
    #[arg(long, value_name = "plain|residual")]
    block: Option<BlockArg>,
    /// A residual block's cell width as a multiple of the block's.
    #[arg(long, value_name = "F", value_parser = crate::ranges::positive("the expansion"))]
    expansion: Option<f64>,
    /// IndRNN: clamp each recurrent weight to [-B, B] (the paper's bound against exploding relu states).
    #[arg(long, value_name = "B", value_parser = crate::ranges::positive("the bound"))]
    bound: Option<f64>,
    /// xLSTM blocks (--cell slstm, mlstm, xlstm): the heads of each block's cell.
    #[arg(long, value_name = "N", value_parser = crate::ranges::at_least_one("--heads"))]
    heads: Option<usize>,
    /// --cell xlstm: the kinds of the blocks in order, m (mLSTM) and s (sLSTM), such as m,m,s,m, cycled
    /// over the layers; without --layers, one layer per block.
    #[arg(long, value_name = "KINDS", value_parser = pattern_parser)]
    pattern: Option<String>,
}

/// `--pattern`: checked here, saved as given.
fn pattern_parser(s: &str) -> Result<String, String> {
    seqlab_cells::parse_pattern(s).map(|_| s.to_string())
}

/// `--block`.
#[derive(clap::ValueEnum, Clone, Copy, Debug)]
pub enum BlockArg {
    Plain,
    Residual,
}

/// A model config's recurrent settings, for [`StackArgs::apply`].
#[derive(Debug)]
pub struct StackFields<'a> {
    pub cell: &'a mut CellKind,
    pub hidden: &'a mut usize,
    pub layers: &'a mut usize,
    pub dropout: &'a mut f32,
    pub options: &'a mut CellOptions,
}

impl StackArgs {
    /// Sets the given flags into a model config's fields.
    pub fn apply(&self, fields: StackFields<'_>) {
        if let Some(cell) = self.cell {
            *fields.cell = cell;
        }
        if let Some(hidden) = self.hidden {
            *fields.hidden = hidden;
        }
        if let Some(layers) = self.layers {
            *fields.layers = layers;
        }
        if let Some(dropout) = self.dropout {
            *fields.dropout = dropout;
        }
        if let Some(block) = self.block {
            fields.options.block = match block {
                BlockArg::Plain => Block::Plain,
                BlockArg::Residual => Block::Residual,
            };
        }
        if let Some(expansion) = self.expansion {
            fields.options.expansion = expansion as f32;
        }
        if let Some(bound) = self.bound {
            fields.options.bound = Some(bound as f32);
        }
        if let Some(heads) = self.heads {
            fields.options.heads = heads;
        }
        if let Some(pattern) = &self.pattern {
            fields.options.pattern = Some(pattern.clone());
            if self.layers.is_none() {
                *fields.layers = seqlab_cells::parse_pattern(pattern).map_or(1, |p| p.len());
            }
        }
    }
}

/// Sets the given [`StackArgs`] into a model config's `cell`, `hidden`, `layers` and `dropout` (the names
/// every model config gives them).
macro_rules! set_stack {
    ($stack:expr, $model:expr) => {
        $stack.apply($crate::train_args::StackFields {
            cell: &mut $model.cell,
            hidden: &mut $model.hidden,
            layers: &mut $model.layers,
            dropout: &mut $model.dropout,
            options: &mut $model.cell_options,
        })
    };
}

pub(crate) use set_stack;

/// `--cell`: one of the registry's names (aliases accepted), listed in `--help`.
fn cell_parser() -> impl TypedValueParser<Value = CellKind> {
    PossibleValuesParser::new(
        CellKind::ALL
            .iter()
            .map(|kind| PossibleValue::new(kind.as_str()).aliases(kind.aliases().iter().copied())),
    )
    .try_map(|name| name.parse::<CellKind>())
}

/// Flags `A` whose `--help` pipeline `P` completes: with its defaults, its command's name.
#[derive(Debug)]
pub struct For<P, A> {
    /// The flags as parsed.
    pub args: A,
    pipeline: PhantomData<P>,
}

/// How pipeline `P` completes the help of a group of flags.
pub trait Completed<P> {
    /// `cmd`, whose arguments include this group's, with their help completed for `P`.
    fn complete(cmd: Command) -> Command;
}

/// [`LoopArgs`] with the defaults of pipeline `P` shown in `--help`.
pub type Loop<P> = For<P, LoopArgs>;

/// [`StackArgs`] with the defaults of pipeline `P` shown in `--help`.
pub type Stack<P> = For<P, StackArgs>;

/// [`ModelArg`] naming pipeline `P`'s train command in `--help`.
pub type ModelDirArg<P> = For<P, ModelArg>;

/// `--model DIR`: the model directory a command reads.
#[derive(clap::Args, Debug)]
pub struct ModelArg {
    /// A model directory.
    #[arg(long, value_name = "DIR")]
    pub model: PathBuf,
}

impl<P: Pipeline> Loop<P> {
    /// The pipeline's default loop settings.
    pub fn defaults() -> LoopConfig {
        P::TrainConfig::default().loop_config().clone()
    }

    /// [`LoopArgs::config`] over the pipeline's defaults.
    pub fn config(&self) -> anyhow::Result<LoopConfig> {
        self.args.config(&Self::defaults())
    }
}

impl<P, A> std::ops::Deref for For<P, A> {
    type Target = A;

    fn deref(&self) -> &A {
        &self.args
    }
}

impl<P: Pipeline> Completed<P> for LoopArgs {
    fn complete(cmd: Command) -> Command {
        show_defaults(cmd, loop_defaults(&Loop::<P>::defaults()))
    }
}

impl<P: Pipeline> Completed<P> for StackArgs {
    fn complete(cmd: Command) -> Command {
        show_defaults(
            cmd,
            stack_defaults(&P::recurrent(&P::ModelConfig::default())),
        )
    }
}

impl<P: Pipeline> Completed<P> for ModelArg {
    fn complete(cmd: Command) -> Command {
        cmd.mut_arg("model", |arg| {
            arg.help(format!(
                "A model directory written by `seqlab {} train`",
                P::TASK
            ))
        })
    }
}

impl<P, A: FromArgMatches> FromArgMatches for For<P, A> {
    fn from_arg_matches(matches: &ArgMatches) -> Result<Self, clap::Error> {
        Ok(For {
            args: A::from_arg_matches(matches)?,
            pipeline: PhantomData,
        })
    }

    fn update_from_arg_matches(&mut self, matches: &ArgMatches) -> Result<(), clap::Error> {
        self.args.update_from_arg_matches(matches)
    }
}

impl<P: Pipeline, A: Args + Completed<P>> Args for For<P, A> {
    fn augment_args(cmd: Command) -> Command {
        A::complete(A::augment_args(cmd))
    }

    fn augment_args_for_update(cmd: Command) -> Command {
        A::complete(A::augment_args_for_update(cmd))
    }
}

/// Appends `[default: VALUE]` to the help of each named argument.
fn show_defaults(mut cmd: Command, defaults: Vec<(&'static str, String)>) -> Command {
    for (id, value) in defaults {
        cmd = cmd.mut_arg(id, |arg| {
            let help = arg.get_help().map(ToString::to_string).unwrap_or_default();
            arg.help(format!("{help} [default: {value}]"))
        });
    }
    cmd
}

fn loop_defaults(d: &LoopConfig) -> Vec<(&'static str, String)> {
    let every = |n: usize| {
        if n == 0 {
            "once per epoch".to_string()
        } else {
            n.to_string()
        }
    };
    vec![
        ("lr", d.lr.to_string()),
        ("weight_decay", d.weight_decay.to_string()),
        ("clip", d.clip.to_string()),
        ("warmup", d.warmup.to_string()),
        (
            "schedule",
            match d.schedule {
                Schedule::Constant => "constant",
                Schedule::Cosine { .. } => "cosine",
                Schedule::WarmupStableDecay { .. } => "wsd",
            }
            .to_string(),
        ),
        ("epochs", d.epochs.unwrap_or(20).to_string()),
        ("seed", d.seed.to_string()),
        ("eval_every", every(d.eval_every)),
        ("checkpoint_every", every(d.checkpoint_every)),
    ]
}

fn stack_defaults(d: &RecurrentConfig) -> Vec<(&'static str, String)> {
    vec![
        ("cell", d.cell.to_string()),
        ("hidden", d.hidden_size.to_string()),
        ("layers", d.num_layers.to_string()),
        ("dropout", d.dropout.to_string()),
        (
            "block",
            match d.options.block {
                Block::Plain => "plain",
                Block::Residual => "residual",
            }
            .to_string(),
        ),
        ("expansion", d.options.expansion.to_string()),
        ("heads", d.options.heads.to_string()),
    ]
}

impl<P: Pipeline> Loop<P> {
    /// Trains `model` with `config` into `--out`, the run's options from these flags (`--threads`,
    /// `--device`, `--resume`), with a progress bar: [`seqlab_train::pipeline::train`].
    pub fn train(
        &self,
        model: &P::ModelConfig,
        config: &P::TrainConfig,
    ) -> anyhow::Result<P::Report> {
        let options = self.start()?;
        Ok(seqlab_train::pipeline::train::<P>(
            model, config, &self.out, options,
        )?)
    }
}

/// The summary line every `train` command prints: how the run ended, its steps, time and throughput (in
/// the pipeline's `unit`s per second), and the model's size.
pub fn print_summary(
    out: &mut impl Write,
    summary: &TrainSummary,
    parameters: usize,
    unit: &str,
) -> std::io::Result<()> {
    let of_total = summary
        .total_steps
        .map(|total| format!("/{total}"))
        .unwrap_or_default();
    writeln!(
        out,
        "{} at step {}{of_total} after {:.1} min ({:.0} {unit}/s); {parameters} parameters",
        summary.stopped,
        summary.steps,
        summary.elapsed_s / 60.0,
        summary.tokens_per_s,
    )
}
