//! Seeded parameter initialisation: the same seed gives the same initial weights on every run.

use std::collections::HashMap;

use candle_core::{DType, Device, Result, Shape, Tensor, Var};
use candle_nn::var_builder::SimpleBackend;
use candle_nn::{Init, VarBuilder, VarMap};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// A `VarBuilder` that creates every parameter a model asks for as a `Var` in `varmap`, initialised from
/// the model's own hint (`Init::Uniform`, `Init::Randn`, ...) with random numbers drawn from `seed` and the
/// parameter's name. candle's CPU random generator cannot be seeded; this makes `--seed` fix the initial
/// weights, whatever order the model creates its parameters in.
pub fn seeded_var_builder(varmap: &VarMap, seed: u64, device: &Device) -> VarBuilder<'static> {
    VarBuilder::from_backend(
        Box::new(SeededVarMap {
            varmap: varmap.clone(),
            seed,
        }),
        DType::F32,
        device.clone(),
    )
}

struct SeededVarMap {
    varmap: VarMap,
    seed: u64,
}

impl SimpleBackend for SeededVarMap {
    fn get(
        &self,
        shape: Shape,
        name: &str,
        init: Init,
        dtype: DType,
        dev: &Device,
    ) -> Result<Tensor> {
        let mut vars = self
            .varmap
            .data()
            .lock()
            .map_err(|_| candle_core::Error::Msg("a poisoned var map".into()))?;
        if let Some(var) = vars.get(name) {
            if var.shape() != &shape {
                candle_core::bail!(
                    "shape mismatch for {name}: {:?} exists, {:?} asked for",
                    var.dims(),
                    shape.dims()
                );
            }
            return Ok(var.as_tensor().clone());
        }
        let tensor = seeded_tensor(&shape, init, self.seed, name, dev)?.to_dtype(dtype)?;
        let var = Var::from_tensor(&tensor)?;
        let out = var.as_tensor().clone();
        vars.insert(name.to_string(), var);
        Ok(out)
    }

    fn get_unchecked(&self, name: &str, _dtype: DType, _dev: &Device) -> Result<Tensor> {
        candle_core::bail!(
            "{name}: a seeded var builder creates parameters from their shape and init"
        )
    }

    fn contains_tensor(&self, name: &str) -> bool {
        self.varmap
            .data()
            .lock()
            .map(|vars| vars.contains_key(name))
            .unwrap_or(false)
    }
}

/// Draws a tensor of `shape` from `init` with a ChaCha8 stream seeded by `seed` and a hash of `name`.
fn seeded_tensor(shape: &Shape, init: Init, seed: u64, name: &str, dev: &Device) -> Result<Tensor> {
    let n = shape.elem_count();
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ fnv1a(name.as_bytes()));
    let values: Vec<f32> = match init {
        Init::Const(c) => vec![c as f32; n],
        Init::Uniform { lo, up } => (0..n).map(|_| rng.random_range(lo..up) as f32).collect(),
        Init::Randn { mean, stdev } => (0..n)
            .map(|_| (mean + stdev * standard_normal(&mut rng)) as f32)
            .collect(),
        Init::Kaiming { .. } => {
            // Not used by seqlab's models; PyTorch's default for a linear layer is U(±1/√fan_in).
            let fan_in = shape.dims().iter().skip(1).product::<usize>().max(1) as f64;
            let bound = 1.0 / fan_in.sqrt();
            (0..n)
                .map(|_| rng.random_range(-bound..bound) as f32)
                .collect()
        }
    };
    Tensor::from_vec(values, shape.clone(), dev)
}

/// A standard normal draw (Box–Muller).
fn standard_normal(rng: &mut ChaCha8Rng) -> f64 {
    let u1: f64 = 1.0 - rng.random::<f64>(); // (0, 1]
    let u2: f64 = rng.random::<f64>();
    (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
}

/// FNV-1a, a stable 64-bit hash of a name.
pub(crate) fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ b as u64).wrapping_mul(0x0100_0000_01b3)
    })
}

/// The parameters of a var map by name.
pub(crate) fn named_vars(varmap: &VarMap) -> HashMap<String, Var> {
    varmap
        .data()
        .lock()
        .map(|vars| vars.clone())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_gives_the_same_weights_in_any_creation_order() {
        let make = |seed, order: &[&str]| {
            let varmap = VarMap::new();
            let vb = seeded_var_builder(&varmap, seed, &Device::Cpu);
            for name in order {
                vb.get_with_hints((3, 4), name, Init::Uniform { lo: -0.5, up: 0.5 })
                    .unwrap();
            }
            let vars = named_vars(&varmap);
            vars["a"]
                .as_tensor()
                .flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap()
        };
        let a = make(1, &["a", "b"]);
        assert_eq!(a, make(1, &["b", "a"]));
        assert_ne!(a, make(2, &["a", "b"]));
        assert!(a.iter().all(|v| (-0.5..0.5).contains(v)));
    }

    #[test]
    fn normal_draws_have_the_asked_moments() {
        let t = seeded_tensor(
            &Shape::from(20_000),
            Init::Randn {
                mean: 1.0,
                stdev: 2.0,
            },
            3,
            "x",
            &Device::Cpu,
        )
        .unwrap();
        let v = t.to_vec1::<f32>().unwrap();
        let mean = v.iter().map(|&x| x as f64).sum::<f64>() / v.len() as f64;
        let var = v.iter().map(|&x| (x as f64 - mean).powi(2)).sum::<f64>() / v.len() as f64;
        assert!((mean - 1.0).abs() < 0.05, "{mean}");
        assert!((var.sqrt() - 2.0).abs() < 0.05, "{var}");
    }
}
