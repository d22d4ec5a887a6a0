//! The fused recurrence of one layer in one direction: forward and backward over whole sequences on raw
//! buffers, a block of batch rows per thread.
//!
//! Layouts (all row-major, batch first like the tensors around them):
//! - `xp` (batch, seq, G·H): the projected inputs, `b_ih` included;
//! - `res` (batch, seq + S, H): the outputs of every step, then the final `h` (and `c`): S = 1 or 2;
//! - saved for the backward pass, each (batch, seq, ·): `acts` (G·H), `hprev` (H, the state each step read),
//!   `cprev` (H, LSTM) and `aux` (H: tanh(c') for an LSTM, W_hn·h + b_hn for a GRU).
//!
//! Rows past their length keep their state: their outputs are zero, their activations are zero, and the
//! backward pass carries their gradients through unchanged — PyTorch's packed sequences, without packing.

use super::gemm::{matmul, MatRef};
use crate::cells::Gates;

/// Sizes shared by every block of one call.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Dims {
    /// Gate blocks of the cell.
    pub gates: usize,
    /// Final-state slots after the outputs in `res`: 2 with a cell tensor `c`, else 1.
    pub slots: usize,
    pub seq: usize,
    pub hidden: usize,
    /// Processes time from the end of each row backwards.
    pub reverse: bool,
}

impl Dims {
    /// The sizes of a cell of gate math `G`.
    pub fn of<G: Gates>(seq: usize, hidden: usize, reverse: bool) -> Dims {
        Dims {
            gates: G::GATES,
            slots: if G::CELL_STATE { 2 } else { 1 },
            seq,
            hidden,
            reverse,
        }
    }
    pub fn gh(&self) -> usize {
        self.gates * self.hidden
    }
    /// Final-state slots after the outputs in `res`.
    pub fn state_slots(&self) -> usize {
        self.slots
    }
    fn time(&self, step: usize) -> usize {
        if self.reverse {
            self.seq - 1 - step
        } else {
            step
        }
    }
}

/// The recurrent weights as the kernels read them.
#[derive(Debug)]
pub(crate) struct HiddenWeights<'a> {
    /// W_hhᵀ, (H, G·H) with row stride `ld` (padded against cache-set conflicts).
    pub w_t: &'a [f32],
    pub ld: usize,
    /// W_hh (G·H, H) with row stride `w_rs`.
    pub w: &'a [f32],
    pub w_rs: usize,
    /// b_hh (G·H), if the layer has biases.
    pub bias: Option<&'a [f32]>,
    /// b_ih (G·H), if the layer has biases: added to each projected input row as the step reaches it.
    pub bias_x: Option<&'a [f32]>,
}

/// The saved activations of one block of rows (each buffer holds exactly that block's rows).
#[derive(Debug)]
pub(crate) struct SavedMut<'a> {
    pub acts: &'a mut [f32],
    pub hprev: &'a mut [f32],
    pub cprev: &'a mut [f32],
    pub aux: &'a mut [f32],
}

/// Saved activations, read-only, for the backward pass of one block.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SavedRef<'a> {
    pub acts: &'a [f32],
    pub hprev: &'a [f32],
    pub cprev: &'a [f32],
    pub aux: &'a [f32],
}

fn valid(lengths: Option<&[usize]>, row: usize, t: usize) -> bool {
    lengths.is_none_or(|l| t < l[row])
}

multiversion! {
    /// Forward over all steps for one block of `rows` batch rows. `h0`/`c0` (rows, H) are the initial state.
    fn forward_block<G: Gates> => forward_block_impl(
        d: Dims,
        rows: usize,
        lengths: Option<&[usize]>,
        xp: &mut [f32],
        w: &HiddenWeights<'_>,
        h0: &[f32],
        c0: &[f32],
        res: &mut [f32],
        saved: SavedMut<'_>,
    )
}

multiversion! {
    /// Backward over all steps for one block. `dres` (rows, seq + S, H) is the gradient of `res`. Writes `dxp`
    /// (rows, seq, G·H) and, for a GRU, `dph` (rows, seq, G·H; empty otherwise: it equals `dxp`), and the
    /// gradients of the initial `h` and `c` (rows, H) each.
    fn backward_block<G: Gates> => backward_block_impl(
        d: Dims,
        rows: usize,
        lengths: Option<&[usize]>,
        w: &HiddenWeights<'_>,
        saved: SavedRef<'_>,
        dres: &[f32],
        dxp: &mut [f32],
        dph: &mut [f32],
        dh0: &mut [f32],
        dc0: &mut [f32],
        db_x: &mut [f32],
        db_h: &mut [f32],
    )
}

#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn forward_block_impl<G: Gates>(
    d: Dims,
    rows: usize,
    lengths: Option<&[usize]>,
    xp: &mut [f32],
    w: &HiddenWeights<'_>,
    h0: &[f32],
    c0: &[f32],
    res: &mut [f32],
    saved: SavedMut<'_>,
) {
    let (seq, hid, gh, slots) = (d.seq, d.hidden, d.gh(), d.state_slots());
    let mut h = h0.to_vec();
    let mut c = if G::CELL_STATE {
        c0.to_vec()
    } else {
        vec![0.0; rows * hid]
    };
    let mut ph = vec![0.0f32; rows * gh];
    // Unused buffers of cells that need no cprev/aux are empty: give each row an empty slice then.
    let per = |buf_len: usize| if buf_len == 0 { 0 } else { hid };
    let (cprev_w, aux_w) = (per(saved.cprev.len()), per(saved.aux.len()));
    for step in 0..seq {
        let t = d.time(step);
        matmul(
            &mut ph,
            gh,
            MatRef::rows(&h, rows, hid, hid),
            MatRef::rows(w.w_t, hid, gh, w.ld),
            false,
            1,
        );
        for b in 0..rows {
            let at = b * seq + t;
            let hrow = &mut h[b * hid..(b + 1) * hid];
            saved.hprev[at * hid..(at + 1) * hid].copy_from_slice(hrow);
            let out = &mut res[(b * (seq + slots) + t) * hid..][..hid];
            let acts = &mut saved.acts[at * gh..(at + 1) * gh];
            if !valid(lengths, b, t) {
                out.fill(0.0);
                acts.fill(0.0);
                continue;
            }
            let phrow = &mut ph[b * gh..(b + 1) * gh];
            if let Some(bias) = w.bias {
                for (p, b) in phrow.iter_mut().zip(bias) {
                    *p += b;
                }
            }
            let pxrow = &mut xp[at * gh..(at + 1) * gh];
            if let Some(bias) = w.bias_x {
                for (p, b) in pxrow.iter_mut().zip(bias) {
                    *p += b;
                }
            }
            G::forward_row(
                pxrow,
                phrow,
                hrow,
                &mut c[b * hid..(b + 1) * hid],
                acts,
                &mut saved.cprev[at * cprev_w..(at + 1) * cprev_w],
                &mut saved.aux[at * aux_w..(at + 1) * aux_w],
            );
            out.copy_from_slice(hrow);
        }
    }
    for b in 0..rows {
        let base = b * (seq + slots) + seq;
        res[base * hid..(base + 1) * hid].copy_from_slice(&h[b * hid..(b + 1) * hid]);
        if slots == 2 {
            res[(base + 1) * hid..(base + 2) * hid].copy_from_slice(&c[b * hid..(b + 1) * hid]);
        }
    }
}

#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn backward_block_impl<G: Gates>(
    d: Dims,
    rows: usize,
    lengths: Option<&[usize]>,
    w: &HiddenWeights<'_>,
    saved: SavedRef<'_>,
    dres: &[f32],
    dxp: &mut [f32],
    dph: &mut [f32],
    dh0: &mut [f32],
    dc0: &mut [f32],
    db_x: &mut [f32],
    db_h: &mut [f32],
) {
    let (seq, hid, gh, slots) = (d.seq, d.hidden, d.gh(), d.state_slots());
    let separate_dph = !dph.is_empty();
    let mut dh = vec![0.0f32; rows * hid];
    let mut dc = vec![0.0f32; rows * hid];
    for b in 0..rows {
        let base = b * (seq + slots) + seq;
        dh[b * hid..(b + 1) * hid].copy_from_slice(&dres[base * hid..(base + 1) * hid]);
        if slots == 2 {
            dc[b * hid..(b + 1) * hid].copy_from_slice(&dres[(base + 1) * hid..(base + 2) * hid]);
        }
    }
    let mut dh_next = vec![0.0f32; rows * hid];
    let mut dh_total = vec![0.0f32; hid];
    let per = |buf_len: usize| if buf_len == 0 { 0 } else { hid };
    let (cprev_w, aux_w) = (per(saved.cprev.len()), per(saved.aux.len()));
    let mut scratch_dph = vec![0.0f32; if separate_dph { 0 } else { gh }];
    for step in (0..seq).rev() {
        let t = d.time(step);
        for b in 0..rows {
            let at = b * seq + t;
            let dhrow = &dh[b * hid..(b + 1) * hid];
            let next = &mut dh_next[b * hid..(b + 1) * hid];
            if !valid(lengths, b, t) {
                // The state passed through this step unchanged: its rows of dxp (and dph) are zero (written
                // here: the buffers come from the pool with stale contents).
                next.copy_from_slice(dhrow);
                dxp[at * gh..(at + 1) * gh].fill(0.0);
                if separate_dph {
                    dph[at * gh..(at + 1) * gh].fill(0.0);
                }
                continue;
            }
            let dout = &dres[(b * (seq + slots) + t) * hid..][..hid];
            for ((s, a), o) in dh_total.iter_mut().zip(dhrow).zip(dout) {
                *s = a + o;
            }
            let dph_row = if separate_dph {
                &mut dph[at * gh..(at + 1) * gh]
            } else {
                &mut scratch_dph[..]
            };
            G::backward_row(
                &dh_total,
                &mut dc[b * hid..(b + 1) * hid],
                &saved.acts[at * gh..(at + 1) * gh],
                &saved.hprev[at * hid..(at + 1) * hid],
                &saved.cprev[at * cprev_w..(at + 1) * cprev_w],
                &saved.aux[at * aux_w..(at + 1) * aux_w],
                &mut dxp[at * gh..(at + 1) * gh],
                dph_row,
                next,
            );
            // The bias gradients are the column sums of dxp and dph: summed here while the rows are hot.
            // (Without a separate dph, db_h equals db_x: copied once at the end.)
            if !db_x.is_empty() {
                for (s, v) in db_x.iter_mut().zip(&dxp[at * gh..(at + 1) * gh]) {
                    *s += v;
                }
                if separate_dph {
                    for (s, v) in db_h.iter_mut().zip(&dph[at * gh..(at + 1) * gh]) {
                        *s += v;
                    }
                }
            }
        }
        // dh_prev = dh_direct + dph_t · W_hh, dph_t read in place: rows of step t lie seq·G·H apart.
        let src: &[f32] = if separate_dph { dph } else { dxp };
        matmul(
            &mut dh_next,
            hid,
            MatRef::rows(&src[t * gh..], rows, gh, seq * gh),
            MatRef::rows(w.w, gh, hid, w.w_rs),
            true,
            1,
        );
        std::mem::swap(&mut dh, &mut dh_next);
    }
    dh0.copy_from_slice(&dh);
    if slots == 2 {
        dc0.copy_from_slice(&dc);
    }
    if !separate_dph {
        db_h.copy_from_slice(db_x);
    }
}
