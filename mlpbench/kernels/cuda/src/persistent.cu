// One thread block trains the whole net for every epoch in a single launch.
// One block trains the net for `epochs` epochs in one launch: the lab's loop, phase by phase with
// __syncthreads between phases. blockDim.x must be a power of two (the loss tree reduction).
// params: the flat params [W_0 | b_0 | W_1 | b_1 | ...] (row-major W), read at the start and written at the end.
// sizes: the L + 1 layer sizes. history[e] gets epoch e's loss (before its update); the loop stops
// after the first non-finite loss. Dynamic shared memory, in this order:
//   red [blockDim.x doubles] | P [n_params T] | G [n_params T] | A_0 = X | A_1 | ... | A_L  (A_l: N x sizes[l])
// In the backward pass dz of layer l overwrites A_{l+1} once nothing reads it any more.
template <typename T, int ACT>
__global__ void train_persistent(T* __restrict__ params, const T* __restrict__ X, const T* __restrict__ y,
                                 const int* __restrict__ sizes, int n_layers, int n_rows, int epochs,
                                 T lr, T divisor, T floor_, T lo, T hi, double* __restrict__ history) {
    extern __shared__ double mlp_smem[];
    const int tid = threadIdx.x, nt = blockDim.x, N = n_rows, L = n_layers;
    int n_params = 0, n_acts = 0;
    for (int l = 0; l < L; ++l) n_params += sizes[l] * sizes[l + 1] + sizes[l + 1];
    for (int l = 0; l <= L; ++l) n_acts += N * sizes[l];
    double* red = mlp_smem;
    T* P = reinterpret_cast<T*>(mlp_smem + nt);
    T* G = P + n_params;
    T* A = G + n_params;
    const int n_out = sizes[L];
    const double count = (double)N * (double)n_out;

    for (int i = tid; i < n_params; i += nt) P[i] = params[i];
    for (int i = tid; i < N * sizes[0]; i += nt) A[i] = X[i];
    __syncthreads();

    for (int epoch = 0; epoch < epochs; ++epoch) {
        // forward: A_{l+1} = act(A_l @ W_l + b_l), sigmoid on the last layer
        int p = 0, a = 0;
        for (int l = 0; l < L; ++l) {
            const int in = sizes[l], out = sizes[l + 1];
            const T* W = P + p;
            const T* b = W + in * out;
            const T* Ain = A + a;
            T* Aout = A + a + N * in;
            for (int idx = tid; idx < N * out; idx += nt) {
                const int i = idx / out, j = idx - i * out;
                T acc = T(0);
                for (int k = 0; k < in; ++k) acc += Ain[i * in + k] * W[k * out + j];
                Aout[idx] = (l == L - 1) ? mlp_sigmoid(acc + b[j], floor_) : mlp_activate<T, ACT>(acc + b[j], floor_);
            }
            p += in * out + out;
            a += N * in;
            __syncthreads();
        }
        // loss of y_hat = A_L, then dz = (y_hat - y) / divisor in its place
        T* Yh = A + a;
        double part = 0.0;
        for (int idx = tid; idx < N * n_out; idx += nt) {
            const T ph = Yh[idx], t = y[idx];
            part += (double)mlp_bce_term(ph, t, lo, hi);
            Yh[idx] = (ph - t) / divisor;
        }
        red[tid] = part;
        __syncthreads();
        for (int h = nt / 2; h > 0; h >>= 1) {
            if (tid < h) red[tid] += red[tid + h];
            __syncthreads();
        }
        const double loss = -red[0] / count;
        if (tid == 0) history[epoch] = loss;
        if (!isfinite(loss)) break;  // every thread read the same value: a uniform exit

        // backward, last layer first: dW_l = A_l^T dz_l, db_l = colsum(dz_l), dz_{l-1} = (dz_l W_l^T) * act'(A_l)
        int p_end = n_params, a_end = n_acts;
        for (int l = L - 1; l >= 0; --l) {
            const int in = sizes[l], out = sizes[l + 1];
            const int w0 = p_end - (in * out + out);
            const T* W = P + w0;
            T* gW = G + w0;
            T* gb = gW + in * out;
            const T* dZ = A + (a_end - N * out);
            T* Ain = A + (a_end - N * out - N * in);
            for (int idx = tid; idx < in * out + out; idx += nt) {
                T acc = T(0);
                if (idx < in * out) {
                    const int k = idx / out, j = idx - k * out;
                    for (int i = 0; i < N; ++i) acc += Ain[i * in + k] * dZ[i * out + j];
                    gW[idx] = acc;
                } else {
                    const int j = idx - in * out;
                    for (int i = 0; i < N; ++i) acc += dZ[i * out + j];
                    gb[j] = acc;
                }
            }
            __syncthreads();
            if (l > 0) {
                for (int idx = tid; idx < N * in; idx += nt) {
                    const int i = idx / in, k = idx - i * in;
                    T acc = T(0);
                    for (int j = 0; j < out; ++j) acc += dZ[i * out + j] * W[k * out + j];
                    Ain[idx] = acc * mlp_derivative<T, ACT>(Ain[idx]);
                }
                __syncthreads();
            }
            p_end = w0;
            a_end -= N * out;
        }
        // update every param with the gradients of this epoch
        for (int i = tid; i < n_params; i += nt) P[i] -= lr * G[i];
        __syncthreads();
    }
    for (int i = tid; i < n_params; i += nt) params[i] = P[i];
}
