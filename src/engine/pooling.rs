//! Pooling: one vector per sequence from an encoder's packed hidden states (CLS or mean, whatever
//! the model family), then L2 normalisation.

use super::batch::PackedBatch;
use candle_core::{Result, Tensor, D};

/// Pool packed hidden states into one vector per sequence.
pub fn pool(hidden: &Tensor, batch: &PackedBatch, pooling: super::Pooling) -> Result<Tensor> {
    match pooling {
        super::Pooling::Cls => hidden.index_select(&batch.first_rows, 0),
        super::Pooling::Mean => batch.mean_pool.to_dtype(hidden.dtype())?.matmul(hidden),
    }
}

/// L2-normalise each row.
pub fn normalize(x: &Tensor) -> Result<Tensor> {
    let norm = x.sqr()?.sum_keepdim(D::Minus1)?.sqrt()?;
    x.broadcast_div(&norm.clamp(1e-12, f64::MAX)?)
}
