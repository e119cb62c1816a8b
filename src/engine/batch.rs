//! A batch of tokenised inputs laid out for the encoders: tokens packed back to back without padding
//! (for the dense layers), plus the index maps to and from a padded `[batch, longest]` layout (for
//! attention).

use candle_core::{Device, Result, Tensor};

/// Packed token ids and the maps between packed and padded layouts, already on the model's device.
pub struct PackedBatch {
    /// `[total_tokens]` u32 token ids, sequence after sequence.
    pub ids: Tensor,
    /// `[total_tokens]` u32 position of each token inside its sequence.
    pub positions: Tensor,
    /// `[batch * longest]` u32: for each padded slot, the packed row it reads (padding slots read row 0
    /// of their sequence; the attention mask hides them).
    pub to_padded: Tensor,
    /// `[total_tokens]` u32: for each packed token, its slot in the padded layout.
    pub to_packed: Tensor,
    /// `[batch, 1, 1, longest]` additive attention mask: 0 for real tokens, a large negative number for
    /// padding.
    pub key_mask: Tensor,
    /// `[batch]` u32: the packed row of each sequence's first token.
    pub first_rows: Tensor,
    /// `[batch, total_tokens]` mean-pooling matrix: row b has 1/len_b over sequence b's tokens.
    pub mean_pool: Tensor,
    pub lengths: Vec<usize>,
    pub longest: usize,
}

impl PackedBatch {
    pub fn new(sequences: &[&[u32]], device: &Device) -> Result<Self> {
        let lengths: Vec<usize> = sequences.iter().map(|s| s.len()).collect();
        let batch = sequences.len();
        let longest = lengths.iter().copied().max().unwrap_or(0);
        let total: usize = lengths.iter().sum();

        let mut ids = Vec::with_capacity(total);
        let mut positions = Vec::with_capacity(total);
        let mut to_padded = Vec::with_capacity(batch * longest);
        let mut to_packed = Vec::with_capacity(total);
        let mut key_mask = Vec::with_capacity(batch * longest);
        let mut first_rows = Vec::with_capacity(batch);
        let mut mean_pool = vec![0f32; batch * total];
        let mut offset = 0usize;
        for (b, seq) in sequences.iter().enumerate() {
            first_rows.push(offset as u32);
            ids.extend_from_slice(seq);
            let len = seq.len();
            for p in 0..longest {
                let real = p < len;
                to_padded.push((offset + if real { p } else { 0 }) as u32);
                key_mask.push(if real { 0f32 } else { f32::MIN / 2.0 });
            }
            for p in 0..len {
                positions.push(p as u32);
                to_packed.push((b * longest + p) as u32);
                mean_pool[b * total + offset + p] = 1.0 / len as f32;
            }
            offset += len;
        }
        Ok(PackedBatch {
            ids: Tensor::from_vec(ids, total, device)?,
            positions: Tensor::from_vec(positions, total, device)?,
            to_padded: Tensor::from_vec(to_padded, batch * longest, device)?,
            to_packed: Tensor::from_vec(to_packed, total, device)?,
            key_mask: Tensor::from_vec(key_mask, (batch, 1, 1, longest), device)?,
            first_rows: Tensor::from_vec(first_rows, batch, device)?,
            mean_pool: Tensor::from_vec(mean_pool, (batch, total), device)?,
            lengths,
            longest,
        })
    }

    pub fn batch_size(&self) -> usize {
        self.lengths.len()
    }

    /// `[total, d]` packed rows → `[batch, longest, d]` padded.
    pub fn pad(&self, packed: &Tensor) -> Result<Tensor> {
        let d = packed.dim(1)?;
        packed.index_select(&self.to_padded, 0)?.reshape((self.batch_size(), self.longest, d))
    }

    /// `[batch, longest, d]` padded → `[total, d]` packed rows.
    pub fn unpad(&self, padded: &Tensor) -> Result<Tensor> {
        let d = padded.dim(2)?;
        padded.reshape((self.batch_size() * self.longest, d))?.index_select(&self.to_packed, 0)
    }
}
