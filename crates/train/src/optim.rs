//! AdamW and gradient-norm clipping on the raw f32 buffers of the parameters.
//!
//! One loop per parameter reads the gradient and updates the moments and the weights in place, where a
//! graph of tensor ops would allocate and traverse each buffer about ten times. The moments are plain vectors
//! owned by the optimizer, so that a checkpoint can save them and `--resume` restore them.

use std::cell::RefCell;
use std::collections::HashMap;

use candle_core::backprop::GradStore;
use candle_core::{bail, CpuStorage, Device, InplaceOp2, Layout, Storage, Tensor, Var};
use serde::{Deserialize, Serialize};

/// AdamW's hyper-parameters; the defaults are PyTorch's `torch.optim.AdamW` defaults but the learning rate.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct AdamWConfig {
    /// Peak learning rate (the schedule scales it). 2e-3 suits small recurrent language models.
    pub lr: f64,
    /// Decay of the first moment.
    pub beta1: f64,
    /// Decay of the second moment.
    pub beta2: f64,
    /// Added to the denominator.
    pub eps: f64,
    /// Decoupled weight decay: each step multiplies every weight by `1 - lr * weight_decay`.
    pub weight_decay: f64,
}

impl Default for AdamWConfig {
    fn default() -> Self {
        Self {
            lr: 2e-3,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.01,
        }
    }
}

/// AdamW with PyTorch's semantics: decoupled weight decay, bias-corrected moments, and the update computed as
/// `p -= (lr / (1 - β1^t)) · m / (√v / √(1 - β2^t) + ε)`, in that order of operations.
#[derive(Debug)]
pub struct AdamW {
    params: Vec<(String, Var)>,
    m: Vec<Vec<f32>>,
    v: Vec<Vec<f32>>,
    steps: u64,
    config: AdamWConfig,
}

impl AdamW {
    /// An optimizer over named parameters (sorted by name, so that saved moments line up), moments at zero.
    pub fn new(params: HashMap<String, Var>, config: AdamWConfig) -> candle_core::Result<AdamW> {
        let mut params: Vec<(String, Var)> = params.into_iter().collect();
        params.sort_by(|a, b| a.0.cmp(&b.0));
        for (name, var) in &params {
            if !var.device().is_cpu() || var.dtype() != candle_core::DType::F32 {
                bail!(
                    "the optimizer updates f32 parameters on the CPU; {name} is {:?} on {:?}",
                    var.dtype(),
                    var.device()
                );
            }
        }
        let m = params
            .iter()
            .map(|(_, var)| vec![0.0; var.elem_count()])
            .collect();
        let v = params
            .iter()
            .map(|(_, var)| vec![0.0; var.elem_count()])
            .collect();
        Ok(AdamW {
            params,
            m,
            v,
            steps: 0,
            config,
        })
    }

    /// The hyper-parameters.
    pub fn config(&self) -> &AdamWConfig {
        &self.config
    }

    /// Updates taken so far (`t` of the bias correction).
    pub fn steps(&self) -> u64 {
        self.steps
    }

    /// The global L2 norm of the gradients of all parameters, as `torch.nn.utils.clip_grad_norm_` computes it.
    pub fn grad_norm(&self, grads: &GradStore) -> candle_core::Result<f64> {
        let mut sum = 0.0f64;
        for (_, var) in &self.params {
            if let Some(grad) = grads.get(var.as_tensor()) {
                with_f32(grad, |g| {
                    sum += g.iter().map(|&x| (x as f64) * (x as f64)).sum::<f64>();
                })?;
            }
        }
        Ok(sum.sqrt())
    }

    /// One update with learning rate `lr`, the gradients multiplied by `grad_scale` first (1 for none, a
    /// clipping factor from [`clip_factor`] otherwise). Parameters without a gradient are left alone, their
    /// moments too, as PyTorch does.
    pub fn step(&mut self, grads: &GradStore, lr: f64, grad_scale: f64) -> candle_core::Result<()> {
        self.steps += 1;
        let t = self.steps as i32;
        let c = &self.config;
        let bias_correction1 = 1.0 - c.beta1.powi(t);
        let bias_correction2 = 1.0 - c.beta2.powi(t);
        for (i, (_, var)) in self.params.iter().enumerate() {
            let Some(grad) = grads.get(var.as_tensor()) else {
                continue;
            };
            let op = AdamStep {
                m: RefCell::new(&mut self.m[i]),
                v: RefCell::new(&mut self.v[i]),
                decay: (1.0 - lr * c.weight_decay) as f32,
                beta1: c.beta1 as f32,
                beta2: c.beta2 as f32,
                eps: c.eps as f32,
                step_size: (lr / bias_correction1) as f32,
                bias_correction2_sqrt: bias_correction2.sqrt() as f32,
                grad_scale: grad_scale as f32,
            };
            var.as_tensor().inplace_op2(grad, &op)?;
        }
        Ok(())
    }

    /// The moments as tensors named `m.<parameter>` and `v.<parameter>`, for a checkpoint.
    pub fn state_tensors(&self) -> candle_core::Result<HashMap<String, Tensor>> {
        let mut tensors = HashMap::new();
        for (i, (name, var)) in self.params.iter().enumerate() {
            let shape = var.shape().clone();
            tensors.insert(
                format!("m.{name}"),
                Tensor::from_slice(&self.m[i], &shape, &Device::Cpu)?,
            );
            tensors.insert(
                format!("v.{name}"),
                Tensor::from_slice(&self.v[i], &shape, &Device::Cpu)?,
            );
        }
        Ok(tensors)
    }

    /// Restores the moments saved by [`AdamW::state_tensors`] and the number of updates taken.
    pub fn load_state(
        &mut self,
        tensors: &HashMap<String, Tensor>,
        steps: u64,
    ) -> candle_core::Result<()> {
        for (i, (name, var)) in self.params.iter().enumerate() {
            for (prefix, store) in [("m", &mut self.m[i]), ("v", &mut self.v[i])] {
                let key = format!("{prefix}.{name}");
                let Some(tensor) = tensors.get(&key) else {
                    bail!("the optimizer state has no tensor {key}");
                };
                if tensor.shape() != var.shape() {
                    bail!(
                        "the optimizer state's {key} has shape {:?}, the parameter {:?}",
                        tensor.dims(),
                        var.dims()
                    );
                }
                *store = tensor
                    .flatten_all()?
                    .to_dtype(candle_core::DType::F32)?
                    .to_vec1()?;
            }
        }
        self.steps = steps;
        Ok(())
    }
}

/// The factor that brings a gradient of norm `norm` down to `max_norm`: `max_norm / (norm + 1e-6)` when that
/// is below 1, else 1 (PyTorch's `clip_grad_norm_`). A `max_norm` of 0 or less disables clipping.
pub fn clip_factor(norm: f64, max_norm: f64) -> f64 {
    if max_norm <= 0.0 {
        return 1.0;
    }
    (max_norm / (norm + 1e-6)).min(1.0)
}

/// Runs `f` on the contiguous f32 data of a CPU tensor.
fn with_f32<R>(tensor: &Tensor, f: impl FnOnce(&[f32]) -> R) -> candle_core::Result<R> {
    let (storage, layout) = tensor.storage_and_layout();
    let Storage::Cpu(CpuStorage::F32(data)) = &*storage else {
        bail!(
            "expected an f32 CPU tensor, got {:?} on {:?}",
            tensor.dtype(),
            tensor.device()
        );
    };
    match layout.contiguous_offsets() {
        Some((start, end)) => Ok(f(&data[start..end])),
        None => bail!("expected a contiguous tensor"),
    }
}

/// One AdamW update of one parameter, in place.
struct AdamStep<'a> {
    m: RefCell<&'a mut Vec<f32>>,
    v: RefCell<&'a mut Vec<f32>>,
    decay: f32,
    beta1: f32,
    beta2: f32,
    eps: f32,
    step_size: f32,
    bias_correction2_sqrt: f32,
    grad_scale: f32,
}

impl InplaceOp2 for AdamStep<'_> {
    fn name(&self) -> &'static str {
        "seqlab-adamw"
    }

    fn cpu_fwd(
        &self,
        s1: &mut CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<()> {
        let (CpuStorage::F32(p), CpuStorage::F32(g)) = (s1, s2) else {
            bail!("AdamW updates f32 parameters with f32 gradients");
        };
        let (Some((p0, p1)), Some((g0, g1))) = (l1.contiguous_offsets(), l2.contiguous_offsets())
        else {
            bail!("AdamW needs contiguous parameters and gradients");
        };
        let (p, g) = (&mut p[p0..p1], &g[g0..g1]);
        let mut m = self.m.borrow_mut();
        let mut v = self.v.borrow_mut();
        if p.len() != g.len() || p.len() != m.len() {
            bail!(
                "AdamW: a parameter of {} values has a gradient of {}",
                p.len(),
                g.len()
            );
        }
        let (b1, b2) = (self.beta1, self.beta2);
        for (((p, &g), m), v) in p.iter_mut().zip(g).zip(m.iter_mut()).zip(v.iter_mut()) {
            let g = g * self.grad_scale;
            *p *= self.decay;
            *m = b1 * *m + (1.0 - b1) * g;
            *v = b2 * *v + (1.0 - b2) * g * g;
            let denom = v.sqrt() / self.bias_correction2_sqrt + self.eps;
            *p -= self.step_size * (*m / denom);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn var(values: &[f32]) -> Var {
        Var::from_tensor(&Tensor::new(values, &Device::Cpu).unwrap()).unwrap()
    }

    #[test]
    fn two_steps_match_a_hand_computed_adamw() {
        let w = var(&[1.0, -2.0]);
        let config = AdamWConfig {
            lr: 0.1,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.5,
        };
        let mut opt = AdamW::new(HashMap::from([("w".to_string(), w.clone())]), config).unwrap();
        // loss = sum(w^2): grad = 2w.
        let mut expected = [1.0f64, -2.0];
        let (mut m, mut v) = ([0.0f64; 2], [0.0f64; 2]);
        for t in 1..=2 {
            let loss = w.as_tensor().sqr().unwrap().sum_all().unwrap();
            let grads = loss.backward().unwrap();
            opt.step(&grads, 0.1, 1.0).unwrap();
            for i in 0..2 {
                let g = 2.0 * expected[i];
                expected[i] *= 1.0 - 0.1 * 0.5;
                m[i] = 0.9 * m[i] + 0.1 * g;
                v[i] = 0.999 * v[i] + 0.001 * g * g;
                let m_hat = m[i] / (1.0 - 0.9f64.powi(t));
                let v_hat = v[i] / (1.0 - 0.999f64.powi(t));
                expected[i] -= 0.1 * m_hat / (v_hat.sqrt() + 1e-8);
            }
        }
        let got = w.as_tensor().to_vec1::<f32>().unwrap();
        for i in 0..2 {
            assert!(
                (got[i] as f64 - expected[i]).abs() < 1e-5,
                "{got:?} vs {expected:?}"
            );
        }
        // By hand: step 1 takes 1 to 0.95 - 0.1 = 0.85 (Adam's first step is lr against the gradient's sign),
        // step 2 to 0.85 · 0.95 - 0.1 · 0.9925 = 0.70825.
        assert!((expected[0] - 0.70825).abs() < 1e-4, "{expected:?}");
        assert_eq!(opt.steps(), 2);
    }

    #[test]
    fn clipping_scales_the_gradient_to_the_maximum_norm() {
        let w = var(&[3.0, 4.0]);
        let opt = AdamW::new(
            HashMap::from([("w".to_string(), w.clone())]),
            AdamWConfig::default(),
        )
        .unwrap();
        // loss = sum(w * c) with c = w's values: grad = (3, 4), norm 5.
        let c = Tensor::new(&[3.0f32, 4.0], &Device::Cpu).unwrap();
        let grads = (w.as_tensor() * c)
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        let norm = opt.grad_norm(&grads).unwrap();
        assert!((norm - 5.0).abs() < 1e-9);
        assert!((clip_factor(norm, 1.0) - 0.2).abs() < 1e-6);
        assert_eq!(clip_factor(norm, 10.0), 1.0);
        assert_eq!(clip_factor(norm, 0.0), 1.0);
    }

    #[test]
    fn moments_round_trip_through_state_tensors() {
        let w = var(&[1.0, 2.0, 3.0]);
        let params = HashMap::from([("w".to_string(), w.clone())]);
        let mut opt = AdamW::new(params.clone(), AdamWConfig::default()).unwrap();
        let grads = w
            .as_tensor()
            .sqr()
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        opt.step(&grads, 0.01, 1.0).unwrap();
        let saved = opt.state_tensors().unwrap();
        let mut restored = AdamW::new(params, AdamWConfig::default()).unwrap();
        restored.load_state(&saved, opt.steps()).unwrap();
        assert_eq!(restored.m, opt.m);
        assert_eq!(restored.v, opt.v);
        assert_eq!(restored.steps(), 1);
        assert!(restored
            .load_state(&HashMap::new(), 1)
            .unwrap_err()
            .to_string()
            .contains("m.w"));
    }
}
