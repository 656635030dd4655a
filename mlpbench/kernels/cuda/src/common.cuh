// Shared by every CUDA module of mlpbench (prepended to each; T is the template element type).
#define MLP_RELU 0
#define MLP_TANH 1
#define MLP_SIGMOID 2
#define MLP_TX 32
#define MLP_TY 8

__device__ __forceinline__ float mlp_exp(float x) { return expf(x); }
__device__ __forceinline__ double mlp_exp(double x) { return exp(x); }
__device__ __forceinline__ float mlp_log(float x) { return logf(x); }
__device__ __forceinline__ double mlp_log(double x) { return log(x); }
__device__ __forceinline__ float mlp_tanh(float x) { return tanhf(x); }
__device__ __forceinline__ double mlp_tanh(double x) { return tanh(x); }

// 1 / (1 + exp(-max(z, floor))): the reference's clamp keeps exp finite; NaN propagates.
template <typename T>
__device__ __forceinline__ T mlp_sigmoid(T z, T floor_) {
    const T zc = (z < floor_) ? floor_ : z;
    return T(1) / (T(1) + mlp_exp(-zc));
}

template <typename T, int ACT>
__device__ __forceinline__ T mlp_activate(T z, T floor_) {
    if (ACT == MLP_RELU) return (z < T(0)) ? T(0) : z;  // max(0, z), NaN propagates
    if (ACT == MLP_TANH) return mlp_tanh(z);
    return mlp_sigmoid(z, floor_);
}

// The derivative from the activation's output a: relu a > 0, tanh 1 - a^2, sigmoid a (1 - a).
template <typename T, int ACT>
__device__ __forceinline__ T mlp_derivative(T a) {
    if (ACT == MLP_RELU) return (a > T(0)) ? T(1) : T(0);
    if (ACT == MLP_TANH) return T(1) - a * a;
    return a * (T(1) - a);
}

// y log(p) + (1 - y) log(1 - p) with p clipped to [lo, hi] (numpy's clip: NaN stays NaN).
template <typename T>
__device__ __forceinline__ T mlp_bce_term(T p, T t, T lo, T hi) {
    T c = (p < lo) ? lo : p;
    c = (c > hi) ? hi : c;
    return t * mlp_log(c) + (T(1) - t) * mlp_log(T(1) - c);
}
