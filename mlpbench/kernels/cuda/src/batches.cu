// The softmax head and the mini-batch plumbing (part of the layers module: launched between its kernels).

// z_i = log_softmax(z_i + b) in place for one row of n_cols logits, stable: s = (z + b) - max, then
// s - log(sum(exp(s))), so exp never sees a positive argument and the sum is >= 1 (no overflow and no log(0)
// for any finite logits). NaN propagates through the max, as numpy's max.
template <typename T>
__device__ __forceinline__ void mlp_log_softmax_row(T* zi, const T* b, int n_cols) {
    T mx = zi[0] + b[0];
    for (int j = 0; j < n_cols; ++j) {
        const T v = zi[j] + b[j];
        zi[j] = v;
        if (v > mx || v != v) mx = (mx != mx) ? mx : v;
    }
    T total = T(0);
    for (int j = 0; j < n_cols; ++j) {
        const T s = zi[j] - mx;
        zi[j] = s;
        total += mlp_exp(s);
    }
    const T lse = mlp_log(total);
    for (int j = 0; j < n_cols; ++j) zi[j] -= lse;
}

// The softmax head's forward pass: z = log_softmax(z + b) per row (z: n_rows x n_cols, row-major), one
// thread per row, grid-stride.
template <typename T>
__global__ void bias_log_softmax(T* __restrict__ z, const T* __restrict__ b, int n_rows, int n_cols) {
    const long long stride = (long long)gridDim.x * blockDim.x;
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n_rows; i += stride)
        mlp_log_softmax_row(z + i * n_cols, b, n_cols);
}

// The softmax head's training step in one launch, one thread per row. Block: 1-D, a power of two; grid
// (1, n_chunks): block r = blockIdx.y owns the rows [r * rows_per_chunk, ...). With `forward`, first
// z = log_softmax(z + b) (as bias_log_softmax); else z already holds the log-probabilities. Then
// dz = (exp(z) - y) / divisor (divisor 1 for "sum", the row count for "mean"), the bias-gradient column
// sums partial[r * n_cols + j] (the chunk's rows in order, in double) and loss_partial[r] = the sum of
// y * z over the chunk (double; loss_finish divides by -N). Shared: blockDim.x doubles.
template <typename T>
__global__ void softmax_error_colsum(T* __restrict__ z, const T* __restrict__ b, const T* __restrict__ y, T* dz,
                                     double* __restrict__ partial, double* __restrict__ loss_partial, int n_rows,
                                     int n_cols, int rows_per_chunk, int forward, T divisor) {
    extern __shared__ double mlp_smem[];
    const int t = threadIdx.x, nt = blockDim.x;
    const long long row0 = (long long)blockIdx.y * rows_per_chunk;
    const long long row1 = min(row0 + (long long)rows_per_chunk, (long long)n_rows);
    double l = 0.0;
    for (long long i = row0 + t; i < row1; i += nt) {
        T* zi = z + i * n_cols;
        if (forward) mlp_log_softmax_row(zi, b, n_cols);
        const T* yi = y + i * n_cols;
        T* di = dz + i * n_cols;
        for (int j = 0; j < n_cols; ++j) {
            const T lp = zi[j], target = yi[j];
            di[j] = (mlp_exp(lp) - target) / divisor;
            l += (double)(target * lp);
        }
    }
    mlp_smem[t] = l;
    __syncthreads();  // also makes every thread's dz rows visible to the column sums below
    for (int h = nt / 2; h > 0; h >>= 1) {
        if (t < h) mlp_smem[t] += mlp_smem[t + h];
        __syncthreads();
    }
    if (t == 0) loss_partial[blockIdx.y] = mlp_smem[0];
    for (int j = t; j < n_cols; j += nt) {
        double s = 0.0;
        for (long long i = row0; i < row1; ++i) s += (double)dz[i * n_cols + j];
        partial[(long long)blockIdx.y * n_cols + j] = s;
    }
}

// One mini-batch's rows, gathered: A[r, :] = X[order[start + r], :] and Tb[r, :] = Y[order[start + r], :]
// for r < m, where order = orders + (*epoch % order_epochs) * n_rows is this epoch's permutation, picked on
// the device so that one captured epoch replays with the next order each time. Grid-stride over the
// m * (n_in + n_out) elements.
template <typename T>
__global__ void gather_batch(const T* __restrict__ X, const T* __restrict__ Y, T* __restrict__ A,
                             T* __restrict__ Tb, const int* __restrict__ orders, const int* __restrict__ epoch,
                             int order_epochs, int n_rows, int start, int m, int n_in, int n_out) {
    const int* order = orders + (long long)(*epoch % order_epochs) * n_rows + start;
    const long long nx = (long long)m * n_in, total = nx + (long long)m * n_out;
    const long long stride = (long long)gridDim.x * blockDim.x;
    for (long long k = blockIdx.x * (long long)blockDim.x + threadIdx.x; k < total; k += stride) {
        if (k < nx) {
            const long long r = k / n_in;
            A[k] = X[(long long)order[r] * n_in + (k - r * n_in)];
        } else {
            const long long q = k - nx, r = q / n_out;
            Tb[q] = Y[(long long)order[r] * n_out + (q - r * n_out)];
        }
    }
}

// The end of a mini-batch epoch: history[*epoch] = the mean of its n_batches batch losses (added in batch
// order, as Backend._train_batches does), then ++*epoch and *batch = 0 (loss_finish counted the batches
// in *batch). One thread.
__global__ void epoch_finish(const double* __restrict__ batch_loss, int n_batches, double* __restrict__ history,
                             int* __restrict__ epoch, int* __restrict__ batch, int capacity) {
    if (blockIdx.x != 0 || threadIdx.x != 0) return;
    double s = 0.0;
    for (int k = 0; k < n_batches; ++k) s += batch_loss[k];
    const int e = *epoch;
    if (e < capacity) history[e] = s / n_batches;
    *epoch = e + 1;
    *batch = 0;
}
