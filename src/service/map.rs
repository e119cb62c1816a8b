//! The catalog map as the service answers it: every live movie's position (matrix rows from the
//! build's layout, [`crate::index::layout`]; movies added at run time placed among their nearest
//! matrix rows), with the rating and the predicted rating it is coloured by, as JSON and as a PNG.
//!
//! At 242,552 movies the JSON is megabytes and takes a good part of a second to write, the PNG about
//! as long to draw: each is made once for the rows the catalog holds and kept until a movie is added
//! (the rows only grow, so their count says whether an answer is current).

use super::{blocking, Service, ServiceError};
use crate::index::layout::{self, Layout};
use axum::body::Bytes;
use serde::Serialize;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

/// Coordinates are sent on a grid of this many steps across the map's bounds (integers are shorter
/// than floats in JSON, and the map is never drawn finer).
pub const GRID: u32 = 65_535;
/// Matrix rows whose positions and similarities place a movie added at run time.
const PLACE_FROM: usize = 8;
/// Movies whose ratings the head predicts at once for the map: each batch's tensors (its vectors,
/// normalised, and every hidden layer) are alive together, about 10 kB a movie, so 1,024 of them stay
/// near 10 MB at the peak (8,192 made the server's peak RSS 60 MB higher) for the same speed.
const MAP_BATCH: usize = 1024;
/// Sizes `GET /v1/map.png` draws (pixels per side).
pub const PNG_SIZES: std::ops::RangeInclusive<i64> = 64..=4096;

/// What the map is coloured by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ColorBy {
    /// The movie's rating, 1 to 10.
    Rating,
    /// The rating head's prediction minus the movie's rating.
    Residual,
}

impl ColorBy {
    pub fn parse(text: Option<&str>) -> Result<ColorBy, ServiceError> {
        match text {
            None | Some("rating") => Ok(ColorBy::Rating),
            Some("residual") => Ok(ColorBy::Residual),
            Some(other) => {
                Err(ServiceError::invalid("color", format!("color must be `rating` or `residual`, got `{other}`")))
            }
        }
    }
}

/// The map of every live movie: parallel arrays, one entry per movie.
/// (The server writes these fields straight from its rows, see [`Service::map_json`].)
#[derive(Debug, Serialize)]
pub struct MapResponse {
    pub count: usize,
    /// Steps of the coordinate grid: `x` and `y` run from 0 to this.
    pub grid: u32,
    pub ids: Vec<String>,
    pub titles: Vec<String>,
    pub years: Vec<Option<i64>>,
    pub x: Vec<u32>,
    pub y: Vec<u32>,
    /// The movie's rating (one decimal), when it has one.
    pub rating: Vec<Option<f32>>,
    /// The rating head's prediction (two decimals).
    pub predicted: Vec<f32>,
}

/// A JSON array of what the iterator `0()` gives.
struct Column<F>(F);

impl<F, I> Serialize for Column<F>
where
    F: Fn() -> I,
    I: IntoIterator,
    I::Item: Serialize,
{
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq((self.0)())
    }
}

/// The map's JSON answer and a digest of its bytes (what the server's `ETag` is made of).
#[derive(Debug, Clone)]
pub struct MapJson {
    pub json: Bytes,
    /// The first 16 hex digits of the JSON's SHA-256: it changes whenever the answer does.
    pub digest: String,
}

/// A drawn PNG's catalog rows, size and colouring.
type PngKey = (usize, u32, ColorBy);

/// The layout and what is made from it once.
pub struct CatalogMap {
    layout: Layout,
    /// `[x_min, y_min, x_max, y_max]` of the layout.
    bounds: [f32; 4],
    /// Position and prediction of rows added at run time, found on first use (a row's vector never
    /// changes).
    placed: Mutex<HashMap<usize, ([f32; 2], f32)>>,
    /// The matrix rows' predicted ratings.
    predicted: OnceLock<Vec<f32>>,
    /// The last JSON answer, serialised, and the catalog rows it was made at.
    json: Mutex<Option<(usize, MapJson)>>,
    /// PNGs drawn, by catalog rows, size and colouring.
    png: Mutex<HashMap<PngKey, Arc<[u8]>>>,
}

impl CatalogMap {
    pub fn new(layout: Layout) -> CatalogMap {
        // UMAP flings a few small, unconnected groups far from the rest: the bounds are the 0.5th and
        // 99.5th percentiles of each axis plus a margin, and the few points beyond sit on the edge.
        let mut bounds = [0.0, 0.0, 1.0, 1.0];
        for axis in 0..2 {
            let mut v: Vec<f32> = (0..layout.rows()).map(|r| layout.point(r)[axis]).collect();
            if v.is_empty() {
                continue;
            }
            v.sort_by(f32::total_cmp);
            let cut = if v.len() >= 400 { v.len() / 200 } else { 0 };
            let (lo, hi) = (v[cut], v[v.len() - 1 - cut]);
            let pad = if cut > 0 { (hi - lo) * 0.05 } else { 0.0 };
            bounds[axis] = lo - pad;
            bounds[axis + 2] = hi + pad;
        }
        CatalogMap {
            layout,
            bounds,
            placed: Mutex::default(),
            predicted: OnceLock::new(),
            json: Mutex::default(),
            png: Mutex::default(),
        }
    }

    /// `v` on the grid along axis `axis` (0: x, 1: y).
    fn grid(&self, v: f32, axis: usize) -> u32 {
        let (lo, hi) = (self.bounds[axis], self.bounds[axis + 2]);
        let t = if hi > lo { (v - lo) / (hi - lo) } else { 0.5 };
        (t.clamp(0.0, 1.0) * GRID as f32).round() as u32
    }
}

/// One live movie on the map.
struct Point {
    row: usize,
    xy: [f32; 2],
    rating: Option<f32>,
    predicted: f32,
}

impl Service {
    /// Use `layout` (the matrix rows' positions) for the map.
    pub fn with_map(mut self, layout: Layout) -> Service {
        self.map = Some(CatalogMap::new(layout));
        self
    }

    fn catalog_map(&self) -> Result<&CatalogMap, ServiceError> {
        self.map.as_ref().ok_or_else(|| ServiceError::Unavailable("this server has no catalog map".into()))
    }

    /// Every live movie with its position and colours, in row order. Positions of rows added at run
    /// time are found (and kept) here.
    fn points(&self) -> Result<(usize, Vec<Point>), ServiceError> {
        let map = self.catalog_map()?;
        let predicted = match map.predicted.get() {
            Some(p) => p,
            None => {
                let catalog = self.rows()?;
                let mut all = Vec::with_capacity(self.matrix_rows);
                let mut batch = Vec::with_capacity(MAP_BATCH * self.manifest.dim);
                for start in (0..self.matrix_rows).step_by(MAP_BATCH) {
                    batch.clear();
                    (start..(start + MAP_BATCH).min(self.matrix_rows))
                        .for_each(|r| batch.extend_from_slice(catalog.vector(r)));
                    all.extend(self.predict_rows(&batch)?.iter().map(|p| round(p.rating as f32, 100.0)));
                }
                map.predicted.get_or_init(|| all)
            }
        };
        let catalog = self.rows()?;
        let keep_all = super::Filter::default();
        let mut placed = map.placed.lock().map_err(ServiceError::internal)?;
        let mut points = Vec::with_capacity(catalog.live_count());
        for row in (0..catalog.rows()).filter(|&r| catalog.keep(r, &keep_all, &[])) {
            let (xy, p) = if row < self.matrix_rows && row < map.layout.rows() {
                (map.layout.point(row), predicted[row])
            } else {
                match placed.get(&row) {
                    Some(&found) => found,
                    None => {
                        let vector = catalog.vector(row);
                        let hits = self.index.search(vector, PLACE_FROM, &|_| true);
                        let near: Vec<(usize, f32)> = hits.iter().map(|h| (h.row, h.score)).collect();
                        let xy = layout::place(&map.layout, &near).unwrap_or([map.bounds[0], map.bounds[1]]);
                        let p = round(self.predict_rows(vector)?[0].rating as f32, 100.0);
                        placed.insert(row, (xy, p));
                        (xy, p)
                    }
                }
            };
            let rating = catalog.entry(row).rating.map(|r| round(r as f32, 10.0));
            points.push(Point { row, xy, rating, predicted: p });
        }
        Ok((catalog.version(), points))
    }

    /// The map of every live movie, as JSON bytes (see [`MapResponse`]) with their digest.
    pub async fn map_json(self: &Arc<Self>) -> Result<MapJson, ServiceError> {
        let service = self.clone();
        blocking(move || service.map_json_now()).await
    }

    /// Make the map's JSON answer now (after a start, in the background: at the reference scale the
    /// rating head's predictions for every movie take tens of seconds on a CPU, longer than a request
    /// may wait). Does nothing without a map.
    pub fn warm_map(&self) {
        if self.map.is_none() {
            return;
        }
        let started = std::time::Instant::now();
        match self.map_json_now() {
            Ok(map) => tracing::info!(
                "catalog map ready: {} bytes of JSON in {:.1}s",
                map.json.len(),
                started.elapsed().as_secs_f64()
            ),
            Err(e) => tracing::warn!("the catalog map could not be made: {e}"),
        }
    }

    fn map_json_now(&self) -> Result<MapJson, ServiceError> {
        let map = self.catalog_map()?;
        let rows = self.rows()?.version();
        if let Some((at, json)) = map.json.lock().map_err(ServiceError::internal)?.as_ref() {
            if *at == rows {
                return Ok(json.clone());
            }
        }
        let (rows, points) = self.points()?;
        let catalog = self.rows()?;
        let n = points.len();
        // The fields of a `MapResponse`, each written straight from the points (no array of every
        // id and title held beside the JSON), into a buffer of about the JSON's size (a growing one
        // would hold twice the JSON at its last doubling), kept as it is: no copy into another one.
        let mut json = Vec::with_capacity(n * 56 + 4096);
        {
            use serde::ser::{SerializeStruct, Serializer};
            let mut out = serde_json::Serializer::new(&mut json);
            let mut st = out.serialize_struct("MapResponse", 9).map_err(ServiceError::internal)?;
            let entry = |p: &Point| catalog.entry(p.row);
            let mut fields = || -> serde_json::Result<()> {
                st.serialize_field("count", &n)?;
                st.serialize_field("grid", &GRID)?;
                st.serialize_field("ids", &Column(|| points.iter().map(|p| entry(p).id())))?;
                st.serialize_field("titles", &Column(|| points.iter().map(|p| entry(p).title())))?;
                st.serialize_field("years", &Column(|| points.iter().map(|p| entry(p).year())))?;
                st.serialize_field("x", &Column(|| points.iter().map(|p| map.grid(p.xy[0], 0))))?;
                st.serialize_field("y", &Column(|| points.iter().map(|p| map.grid(p.xy[1], 1))))?;
                st.serialize_field("rating", &Column(|| points.iter().map(|p| p.rating)))?;
                st.serialize_field("predicted", &Column(|| points.iter().map(|p| p.predicted)))?;
                Ok(())
            };
            fields().map_err(ServiceError::internal)?;
            st.end().map_err(ServiceError::internal)?;
        }
        drop(catalog);
        json.shrink_to_fit();
        let digest = crate::hash::sha256_hex(&json)[..16].to_string();
        let answer = MapJson { json: Bytes::from(json), digest };
        *map.json.lock().map_err(ServiceError::internal)? = Some((rows, answer.clone()));
        Ok(answer)
    }

    /// The map drawn as a `size` × `size` PNG, coloured by `color`.
    pub async fn map_png(self: &Arc<Self>, size: Option<i64>, color: ColorBy) -> Result<Arc<[u8]>, ServiceError> {
        let size = match size {
            None => 1024,
            Some(s) if PNG_SIZES.contains(&s) => s as u32,
            Some(s) => {
                let (lo, hi) = (PNG_SIZES.start(), PNG_SIZES.end());
                return Err(ServiceError::invalid(
                    "size",
                    format!("size must be between {lo} and {hi} pixels, got {s}"),
                ));
            }
        };
        let service = self.clone();
        blocking(move || {
            let map = service.catalog_map()?;
            let rows = service.rows()?.version();
            if let Some(png) = map.png.lock().map_err(ServiceError::internal)?.get(&(rows, size, color)) {
                return Ok(png.clone());
            }
            let (rows, points) = service.points()?;
            let png: Arc<[u8]> = Arc::from(draw(map, &points, size, color).map_err(ServiceError::internal)?);
            let mut cache = map.png.lock().map_err(ServiceError::internal)?;
            cache.retain(|(at, _, _), _| *at == rows);
            cache.insert((rows, size, color), png.clone());
            Ok(png)
        })
        .await
    }
}

fn round(v: f32, scale: f32) -> f32 {
    (v * scale).round() / scale
}

/// Draw the points on a dark square (a small margin around the map's bounds), each a dot coloured by
/// `color` (grey without a rating), smaller when there are many.
fn draw(map: &CatalogMap, points: &[Point], size: u32, color: ColorBy) -> anyhow::Result<Vec<u8>> {
    let side = size as usize;
    let mut rgb = vec![0u8; side * side * 3];
    for px in rgb.chunks_exact_mut(3) {
        px.copy_from_slice(&[17, 17, 24]);
    }
    let margin = side as f32 * 0.03;
    let span = side as f32 - 2.0 * margin;
    let density = points.len() as f32 / (side * side) as f32;
    let radius: i64 = if density < 0.002 {
        2
    } else if density < 0.02 {
        1
    } else {
        0
    };
    let alpha = if density > 0.05 { 0.5 } else { 0.85 };
    for p in points {
        let gx = map.grid(p.xy[0], 0) as f32 / GRID as f32;
        let gy = map.grid(p.xy[1], 1) as f32 / GRID as f32;
        let (cx, cy) = ((margin + gx * span) as i64, (margin + (1.0 - gy) * span) as i64);
        let c = match (color, p.rating) {
            (_, None) => [110, 110, 110],
            (ColorBy::Rating, Some(r)) => ramp((r - 1.0) / 9.0),
            (ColorBy::Residual, Some(r)) => diverging((p.predicted - r) / 2.0),
        };
        for y in (cy - radius).max(0)..=(cy + radius).min(side as i64 - 1) {
            for x in (cx - radius).max(0)..=(cx + radius).min(side as i64 - 1) {
                let at = (y as usize * side + x as usize) * 3;
                for ch in 0..3 {
                    let old = f32::from(rgb[at + ch]);
                    rgb[at + ch] = (old + (f32::from(c[ch]) - old) * alpha).round() as u8;
                }
            }
        }
    }
    let mut out = Vec::new();
    let mut encoder = png::Encoder::new(&mut out, size, size);
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Eight);
    let mut writer = encoder.write_header()?;
    writer.write_image_data(&rgb)?;
    writer.finish()?;
    Ok(out)
}

/// Low ratings purple, middling teal, high yellow (viridis' stops), `t` in `[0, 1]`.
fn ramp(t: f32) -> [u8; 3] {
    const STOPS: [[f32; 3]; 5] =
        [[68.0, 1.0, 84.0], [59.0, 82.0, 139.0], [33.0, 145.0, 140.0], [94.0, 201.0, 98.0], [253.0, 231.0, 37.0]];
    let t = t.clamp(0.0, 1.0) * (STOPS.len() - 1) as f32;
    let i = (t.floor() as usize).min(STOPS.len() - 2);
    let f = t - i as f32;
    std::array::from_fn(|c| (STOPS[i][c] + (STOPS[i + 1][c] - STOPS[i][c]) * f).round() as u8)
}

/// Blue below zero (predicted lower than the rating), white at zero, red above; `t` in `[-1, 1]`.
fn diverging(t: f32) -> [u8; 3] {
    let t = t.clamp(-1.0, 1.0);
    let (far, white) = if t < 0.0 { ([59.0, 76.0, 192.0], 1.0 + t) } else { ([180.0, 4.0, 38.0], 1.0 - t) };
    std::array::from_fn(|c| (far[c] + (235.0 - far[c]) * white).round() as u8)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colours_run_from_end_to_end() {
        assert_eq!(ramp(0.0), [68, 1, 84]);
        assert_eq!(ramp(1.0), [253, 231, 37]);
        assert_eq!(ramp(-3.0), ramp(0.0));
        assert_eq!(diverging(0.0), [235, 235, 235]);
        assert_eq!(diverging(-1.0), [59, 76, 192]);
        assert_eq!(diverging(1.0), [180, 4, 38]);
    }

    #[test]
    fn a_colouring_is_named_or_refused() {
        assert_eq!(ColorBy::parse(None).unwrap(), ColorBy::Rating);
        assert_eq!(ColorBy::parse(Some("residual")).unwrap(), ColorBy::Residual);
        assert!(ColorBy::parse(Some("votes")).is_err());
    }
}
