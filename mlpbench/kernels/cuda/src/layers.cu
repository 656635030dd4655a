// The kernels around the cuBLAS matmuls of one epoch (strategies "step" and "graph").
// z = act(z + b) in place; z is (n / n_cols, n_cols) row-major, b has n_cols entries.
template <typename T, int ACT>
__global__ void bias_act(T* __restrict__ z, const T* __restrict__ b, long long n, int n_cols, T floor_) {
    const long long start = blockIdx.x * (long long)blockDim.x + threadIdx.x;
    const long long stride = (long long)gridDim.x * blockDim.x;
    int j = (int)(start % n_cols);
    const int dj = (int)(stride % n_cols);
    for (long long i = start; i < n; i += stride) {
        z[i] = mlp_activate<T, ACT>(z[i] + b[j], floor_);
        j += dj;
        if (j >= n_cols) j -= n_cols;
    }
}

// After a barrier, the first row of threads adds up its column of the block's (MLP_TY, MLP_TX + 1) partial sums
// in shared memory, in row order, into partial[blockIdx.y * n_cols + j].
__device__ __forceinline__ void mlp_colsum_out(const double* smem, double* __restrict__ partial, int n_cols, int j,
                                               int tx, int ty) {
    if (ty == 0 && j < n_cols) {
        double c = 0.0;
        for (int r = 0; r < MLP_TY; ++r) c += smem[r * (MLP_TX + 1) + tx];
        partial[(long long)blockIdx.y * n_cols + j] = c;
    }
}

// g = g * act'(a) in place (g: dL/da of a hidden layer -> dL/dz) and the column sums of the result:
// partial[r * n_cols + j] = sum of g[i, j] over the rows i of chunk r = blockIdx.y (fixed order).
// Block (MLP_TX, MLP_TY); grid (ceil(n_cols / MLP_TX), n_chunks); shared: MLP_TY * (MLP_TX + 1) doubles.
template <typename T, int ACT>
__global__ void act_backward_colsum(T* __restrict__ g, const T* __restrict__ a, double* __restrict__ partial,
                                    int n_rows, int n_cols, int rows_per_chunk) {
    extern __shared__ double mlp_smem[];
    const int tx = threadIdx.x, ty = threadIdx.y;
    const int j = blockIdx.x * MLP_TX + tx;
    const long long row0 = (long long)blockIdx.y * rows_per_chunk;
    const long long row1 = min(row0 + (long long)rows_per_chunk, (long long)n_rows);
    double s = 0.0;
    if (j < n_cols) {
        for (long long i = row0 + ty; i < row1; i += MLP_TY) {
            const long long k = i * n_cols + j;
            const T d = g[k] * mlp_derivative<T, ACT>(a[k]);
            g[k] = d;
            s += (double)d;
        }
    }
    mlp_smem[ty * (MLP_TX + 1) + tx] = s;
    __syncthreads();
    mlp_colsum_out(mlp_smem, partial, n_cols, j, tx, ty);
}

// The output layer: dz = (y_hat - y) / divisor (divisor 1 for "sum", N for "mean"), its column sums
// (as act_backward_colsum) and the BCE terms' sum per block in loss_partial[blockIdx.y * gridDim.x + blockIdx.x].
// Shared: MLP_TY * (MLP_TX + 1) + MLP_TX * MLP_TY doubles.
template <typename T>
__global__ void output_error_colsum(const T* __restrict__ yhat, const T* __restrict__ y, T* __restrict__ dz,
                                    double* __restrict__ partial, double* __restrict__ loss_partial,
                                    int n_rows, int n_cols, int rows_per_chunk, T divisor, T lo, T hi) {
    extern __shared__ double mlp_smem[];
    double* lsum = mlp_smem + MLP_TY * (MLP_TX + 1);
    const int tx = threadIdx.x, ty = threadIdx.y, t = ty * MLP_TX + tx;
    const int j = blockIdx.x * MLP_TX + tx;
    const long long row0 = (long long)blockIdx.y * rows_per_chunk;
    const long long row1 = min(row0 + (long long)rows_per_chunk, (long long)n_rows);
    double s = 0.0, l = 0.0;
    if (j < n_cols) {
        for (long long i = row0 + ty; i < row1; i += MLP_TY) {
            const long long k = i * n_cols + j;
            const T p = yhat[k], target = y[k];
            const T d = (p - target) / divisor;
            dz[k] = d;
            s += (double)d;
            l += (double)mlp_bce_term(p, target, lo, hi);
        }
    }
    mlp_smem[ty * (MLP_TX + 1) + tx] = s;
    lsum[t] = l;
    __syncthreads();
    for (int h = MLP_TX * MLP_TY / 2; h > 0; h >>= 1) {
        if (t < h) lsum[t] += lsum[t + h];
        __syncthreads();
    }
    mlp_colsum_out(mlp_smem, partial, n_cols, j, tx, ty);
    if (t == 0) loss_partial[blockIdx.y * gridDim.x + blockIdx.x] = lsum[0];
}

// out[j] = sum over chunks r (in order) of partial[r * n_cols + j]: the bias gradient.
template <typename T>
__global__ void colsum_finish(const double* __restrict__ partial, T* __restrict__ out, int n_chunks, int n_cols) {
    const int j = blockIdx.x * blockDim.x + threadIdx.x;
    if (j >= n_cols) return;
    double s = 0.0;
    for (int r = 0; r < n_chunks; ++r) s += partial[(long long)r * n_cols + j];
    out[j] = (T)s;
}

// history[*epoch] = -(sum of loss_partial) / count; ++*epoch. The epoch counter lives on the
// device, so one captured graph writes the next slot on every replay. One thread.
__global__ void loss_finish(const double* __restrict__ loss_partial, int n_parts, double count,
                            double* __restrict__ history, int* __restrict__ epoch, int capacity) {
    if (blockIdx.x != 0 || threadIdx.x != 0) return;
    double s = 0.0;
    for (int i = 0; i < n_parts; ++i) s += loss_partial[i];
    const int e = *epoch;
    if (e < capacity) history[e] = -s / count;
    *epoch = e + 1;
}

// f(t, k) for each element of the tensors laid out by offsets (tensor t holds the flat indices
// [offsets[t], offsets[t + 1]); k counts within it), over the grid's threads.
template <typename F>
__device__ __forceinline__ void mlp_each_tensor_element(const long long* __restrict__ offsets, int n_tensors, F f) {
    const long long total = offsets[n_tensors];
    const long long stride = (long long)gridDim.x * blockDim.x;
    int t = 0;
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < total; i += stride) {
        while (i >= offsets[t + 1]) ++t;  // i only grows, so t only moves forward
        f(t, i - offsets[t]);
    }
}

// p -= lr * g over every tensor in one launch: tensor t holds the flat indices
// [offsets[t], offsets[t + 1]); param_ptrs[t] and grad_ptrs[t] are its device addresses.
template <typename T>
__global__ void sgd_multi(const unsigned long long* __restrict__ param_ptrs,
                          const unsigned long long* __restrict__ grad_ptrs,
                          const long long* __restrict__ offsets, int n_tensors, T lr) {
    mlp_each_tensor_element(offsets, n_tensors, [&](int t, long long k) {
        T* p = reinterpret_cast<T*>(param_ptrs[t]);
        const T* g = reinterpret_cast<const T*>(grad_ptrs[t]);
        p[k] -= lr * g[k];
    });
}

// *flag = 0 when any element of the tensors (laid out as for sgd_multi) is not finite.
template <typename T>
__global__ void all_finite_multi(const unsigned long long* __restrict__ ptrs, const long long* __restrict__ offsets,
                                 int n_tensors, int* __restrict__ flag) {
    mlp_each_tensor_element(offsets, n_tensors, [&](int t, long long k) {
        if (!isfinite(reinterpret_cast<const T*>(ptrs[t])[k])) *flag = 0;
    });
}
