/* Attention row by row over a KV cache, in float32, in one fixed order of operations for every row: a row's
   result depends only on its query and on the keys and values it sees, never on the other rows of the call.
   See decodekit/models/native_attention.py. Built with -mavx2 -mfma -fopenmp, linked with libmvec (expf, 8 lanes). */
#include <immintrin.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>

__m256 _ZGVdN8v_expf(__m256 x);

static inline float sum8(__m256 v) {  /* (0+4, 1+5, 2+6, 3+7), then (01, 23), then the two */
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

static inline float max8(__m256 v) {
    __m128 s = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_max_ps(s, _mm_movehl_ps(s, s));
    s = _mm_max_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* One query head over the n keys `seen` of one kv head: out[dim]. `weights` holds n rounded up to 8 floats.
   DIM (a multiple of 8) is a compile-time constant where this is inlined for 64 and 128, so that the
   running sums stay in registers; other sizes take the same steps with DIM known at run time. */
static inline __attribute__((always_inline)) void attend_one(
        const int DIM, const float *q, const float *k, const float *v, const int32_t *seen, int n,
        int64_t position_stride, float scale, float *weights, float *o) {
    const int n8 = (n + 7) / 8 * 8;
    for (int j = 0; j < n; j++) {
        const float *kj = k + (int64_t)seen[j] * position_stride;
        __m256 acc = _mm256_mul_ps(_mm256_loadu_ps(q), _mm256_loadu_ps(kj));
        #pragma GCC unroll 16
        for (int d = 8; d < DIM; d += 8) acc = _mm256_fmadd_ps(_mm256_loadu_ps(q + d), _mm256_loadu_ps(kj + d), acc);
        weights[j] = sum8(acc) * scale;
    }
    for (int j = n; j < n8; j++) weights[j] = -INFINITY;
    __m256 top = _mm256_set1_ps(-INFINITY);
    for (int j = 0; j < n8; j += 8) top = _mm256_max_ps(top, _mm256_load_ps(weights + j));
    const __m256 shift = _mm256_set1_ps(max8(top));
    __m256 total = _mm256_setzero_ps();
    for (int j = 0; j < n8; j += 8) {
        const __m256 e = _ZGVdN8v_expf(_mm256_sub_ps(_mm256_load_ps(weights + j), shift));
        _mm256_store_ps(weights + j, e);
        total = _mm256_add_ps(total, e);
    }
    const __m256 inverse = _mm256_set1_ps(1.0f / sum8(total));
    for (int d0 = 0; d0 < DIM; d0 += 64) {  /* up to eight running sums of eight lanes: 64 outputs at a time */
        const int sums = (DIM - d0 < 64 ? DIM - d0 : 64) / 8;
        __m256 acc[8];  /* in registers where DIM is a constant: the loops over c are unrolled */
        #pragma GCC unroll 8
        for (int c = 0; c < sums; c++) acc[c] = _mm256_setzero_ps();
        for (int j = 0; j < n; j++) {
            const __m256 w = _mm256_set1_ps(weights[j]);
            const float *vj = v + (int64_t)seen[j] * position_stride + d0;
            #pragma GCC unroll 8
            for (int c = 0; c < sums; c++) acc[c] = _mm256_fmadd_ps(w, _mm256_loadu_ps(vj + 8 * c), acc[c]);
        }
        #pragma GCC unroll 8
        for (int c = 0; c < sums; c++) _mm256_storeu_ps(o + d0 + 8 * c, _mm256_mul_ps(acc[c], inverse));
    }
}

/* queries [rows, heads, dim] -> out [rows, heads, dim]. Row r sees the key positions
   index[offsets[r] .. offsets[r + 1]), in that order; head h reads kv head h / (heads / kv_heads), whose
   key at position p starts at keys + kv * head_stride + p * position_stride (the same strides for values).
   The (row, head) pairs are shared among `threads` threads; each is computed alone, so the split does not
   change the bits. Returns 0; -1 when dim is not a multiple of 8; -2 when memory ran out. */
int attend_rows(const float *queries, int rows, int heads, int kv_heads, int dim, const float *keys,
                const float *values, int64_t head_stride, int64_t position_stride, const int32_t *index,
                const int32_t *offsets, float scale, float *out, int threads) {
    if (dim % 8 != 0 || dim < 8) return -1;
    int longest = 0;
    for (int r = 0; r < rows; r++)
        if (offsets[r + 1] - offsets[r] > longest) longest = offsets[r + 1] - offsets[r];
    const size_t room = sizeof(float) * (size_t)((longest + 7) / 8 * 8 + 8);
    const int group = heads / kv_heads;
    int status = 0;
    #pragma omp parallel num_threads(threads)
    {
        float *weights = aligned_alloc(32, room);  /* each thread's scores */
        if (weights == NULL) {
            #pragma omp atomic write
            status = -2;
        } else {
            #pragma omp for schedule(static)
            for (int item = 0; item < rows * heads; item++) {  /* (row, head) pairs, each on its own */
                const int r = item / heads, h = item % heads;
                const int32_t *seen = index + offsets[r];
                const int n = offsets[r + 1] - offsets[r];
                const float *q = queries + (size_t)item * dim;
                const float *k = keys + (h / group) * head_stride, *v = values + (h / group) * head_stride;
                float *o = out + (size_t)item * dim;
                if (dim == 64) attend_one(64, q, k, v, seen, n, position_stride, scale, weights, o);
                else if (dim == 128) attend_one(128, q, k, v, seen, n, position_stride, scale, weights, o);
                else attend_one(dim, q, k, v, seen, n, position_stride, scale, weights, o);
            }
            free(weights);
        }
    }
    return status;
}
