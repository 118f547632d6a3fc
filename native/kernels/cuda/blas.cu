#include "kernels/cuda/blas.h"
#include <algorithm>
#include "kernels/cuda/cuda_ops.h"

namespace er {
namespace cuda {

namespace {

constexpr size_t kWorkspaceBytes = size_t(32) << 20;  // cuBLASLt's scratch, as cuBLAS's default on Hopper

cudaDataType_t cuda_type(DType t) {
  switch (t) {
    case DType::BF16: return CUDA_R_16BF;
    case DType::F16: return CUDA_R_16F;
    default: return CUDA_R_32F;
  }
}

// the largest power of two up to 256 that divides p's address: cuBLASLt's heuristic assumes
// 256-byte aligned operands unless told less (views into a larger allocation are not)
uint32_t alignment(const void* p) {
  const uintptr_t a = (uintptr_t)p;
  uint32_t al = 256;
  while (al > 1 && a % al != 0) al >>= 1;
  return al;
}

std::string lt_error(cublasStatus_t s, const char* what) {
  if (s == CUBLAS_STATUS_SUCCESS) return "";
  return std::string(what) + ": " + blas_status_text(s);
}

}  // namespace

const char* blas_status_text(cublasStatus_t s) {
  switch (s) {
    case CUBLAS_STATUS_SUCCESS: return "success";
    case CUBLAS_STATUS_NOT_INITIALIZED: return "CUBLAS_STATUS_NOT_INITIALIZED (no usable GPU or driver)";
    case CUBLAS_STATUS_ALLOC_FAILED: return "CUBLAS_STATUS_ALLOC_FAILED (out of device memory)";
    case CUBLAS_STATUS_INVALID_VALUE: return "CUBLAS_STATUS_INVALID_VALUE";
    case CUBLAS_STATUS_ARCH_MISMATCH: return "CUBLAS_STATUS_ARCH_MISMATCH (this GPU lacks the feature)";
    case CUBLAS_STATUS_MAPPING_ERROR: return "CUBLAS_STATUS_MAPPING_ERROR";
    case CUBLAS_STATUS_EXECUTION_FAILED: return "CUBLAS_STATUS_EXECUTION_FAILED";
    case CUBLAS_STATUS_INTERNAL_ERROR: return "CUBLAS_STATUS_INTERNAL_ERROR";
    case CUBLAS_STATUS_NOT_SUPPORTED: return "CUBLAS_STATUS_NOT_SUPPORTED";
    default: return "cuBLAS error";
  }
}

// One shape's descriptors and the algorithm the heuristic picked for it.
struct Blas::Plan {
  cublasLtMatmulDesc_t desc = nullptr;
  cublasLtMatrixLayout_t a = nullptr, b = nullptr, c = nullptr;
  cublasLtMatmulAlgo_t algo{};
  ~Plan() {
    if (a) cublasLtMatrixLayoutDestroy(a);
    if (b) cublasLtMatrixLayoutDestroy(b);
    if (c) cublasLtMatrixLayoutDestroy(c);
    if (desc) cublasLtMatmulDescDestroy(desc);
  }
};

std::string Blas::create(cudaStream_t stream, std::unique_ptr<Blas>* out) {
  std::unique_ptr<Blas> b(new Blas);
  b->stream_ = stream;
  std::string err = lt_error(cublasLtCreate(&b->lt_), "cublasLtCreate");
  if (err.empty()) err = lt_error(cublasCreate(&b->blas_), "cublasCreate");
  if (err.empty()) err = lt_error(cublasSetStream(b->blas_, stream), "cublasSetStream");
  // full fp32 products in the batched (attention) GEMMs too: no TF32
  if (err.empty()) err = lt_error(cublasSetMathMode(b->blas_, CUBLAS_PEDANTIC_MATH), "cublasSetMathMode");
  if (err.empty()) {
    err = error_text(cudaMalloc(&b->workspace_, kWorkspaceBytes), "allocating cuBLASLt's workspace");
    if (err.empty()) b->workspace_bytes_ = kWorkspaceBytes;
  }
  if (err.empty()) *out = std::move(b);
  return err;
}

Blas::~Blas() {
  plans_.clear();
  if (workspace_) cudaFree(workspace_);
  if (bias_copy_) cudaFree(bias_copy_);
  if (blas_) cublasDestroy(blas_);
  if (lt_) cublasLtDestroy(lt_);
}

std::string Blas::gemm(bool transA, bool transB, int64_t M, int64_t N, int64_t K, float alpha, const void* A,
                       int64_t lda, const void* B, int64_t ldb, float beta, float* C, int64_t ldc,
                       const float* bias, DType in) {
  if (M <= 0 || N <= 0) return "";
  // the bias epilogue wants a 16-byte aligned vector: a view that is not goes through a copy
  if (bias && alignment(bias) < 16) {
    if (N > bias_cap_) {
      if (bias_copy_) cudaFree(bias_copy_);
      bias_copy_ = nullptr;
      bias_cap_ = 0;
      std::string err = error_text(cudaMalloc(&bias_copy_, (size_t)N * 4), "allocating a GEMM's bias");
      if (!err.empty()) return err;
      bias_cap_ = N;
    }
    std::string err = error_text(cudaMemcpyAsync(bias_copy_, bias, (size_t)N * 4, cudaMemcpyDeviceToDevice, stream_),
                                 "copying a GEMM's bias");
    if (!err.empty()) return err;
    bias = bias_copy_;
  }
  const uint32_t align = std::min(std::min(alignment(A), alignment(B)), alignment(C));
  // row-major C = op(A) op(B) is column-major C^T = op(B)^T op(A)^T: cuBLASLt's first
  // operand is B (m = N), its second A (n = M)
  const Key key{transA, transB, M, N, K, lda, ldb, ldc, bias != nullptr, (int32_t)in, beta != 0.0f, align};
  auto it = plans_.find(key);
  if (it == plans_.end()) {
    std::unique_ptr<Plan> p(new Plan);
    const cublasOperation_t opA = transB ? CUBLAS_OP_T : CUBLAS_OP_N, opB = transA ? CUBLAS_OP_T : CUBLAS_OP_N;
    std::string err = lt_error(cublasLtMatmulDescCreate(&p->desc, CUBLAS_COMPUTE_32F, CUDA_R_32F), "cublasLtMatmulDescCreate");
    if (err.empty())
      err = lt_error(cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_TRANSA, &opA, sizeof(opA)), "TRANSA");
    if (err.empty())
      err = lt_error(cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_TRANSB, &opB, sizeof(opB)), "TRANSB");
    if (err.empty() && bias) {
      const cublasLtEpilogue_t epi = CUBLASLT_EPILOGUE_BIAS;
      const cudaDataType_t bt = CUDA_R_32F;
      err = lt_error(cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_EPILOGUE, &epi, sizeof(epi)), "EPILOGUE");
      if (err.empty())
        err = lt_error(cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, &bt, sizeof(bt)),
                       "BIAS_DATA_TYPE");
    }
    const cudaDataType_t t = cuda_type(in);
    // stored shapes (column-major rows x cols): B is (K, N) or (N, K) when transposed, A likewise
    if (err.empty())
      err = lt_error(cublasLtMatrixLayoutCreate(&p->a, t, transB ? K : N, transB ? N : K, ldb), "layout of B");
    if (err.empty())
      err = lt_error(cublasLtMatrixLayoutCreate(&p->b, t, transA ? M : K, transA ? K : M, lda), "layout of A");
    if (err.empty()) err = lt_error(cublasLtMatrixLayoutCreate(&p->c, CUDA_R_32F, N, M, ldc), "layout of C");
    if (!err.empty()) return "GEMM " + std::to_string(M) + "x" + std::to_string(N) + "x" + std::to_string(K) + ": " + err;
    cublasLtMatmulPreference_t pref = nullptr;
    err = lt_error(cublasLtMatmulPreferenceCreate(&pref), "cublasLtMatmulPreferenceCreate");
    if (err.empty())
      err = lt_error(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES,
                                                          &workspace_bytes_, sizeof(workspace_bytes_)),
                     "MAX_WORKSPACE_BYTES");
    for (cublasLtMatmulPreferenceAttributes_t attr :
         {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES,
          CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES})
      if (err.empty())
        err = lt_error(cublasLtMatmulPreferenceSetAttribute(pref, attr, &align, sizeof(align)), "MIN_ALIGNMENT_BYTES");
    cublasLtMatmulHeuristicResult_t result{};
    int found = 0;
    if (err.empty())
      err = lt_error(cublasLtMatmulAlgoGetHeuristic(lt_, p->desc, p->a, p->b, p->c, p->c, pref, 1, &result, &found),
                     "cublasLtMatmulAlgoGetHeuristic");
    if (pref) cublasLtMatmulPreferenceDestroy(pref);
    if (err.empty() && found == 0) err = "cuBLASLt has no algorithm for this shape and type";
    if (!err.empty()) return "GEMM " + std::to_string(M) + "x" + std::to_string(N) + "x" + std::to_string(K) + ": " + err;
    p->algo = result.algo;
    it = plans_.emplace(key, std::move(p)).first;
  }
  Plan& p = *it->second;
  if (bias) {
    std::string err = lt_error(
        cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias, sizeof(bias)), "BIAS_POINTER");
    if (!err.empty()) return err;
  }
  return lt_error(cublasLtMatmul(lt_, p.desc, &alpha, B, p.a, A, p.b, &beta, C, p.c, C, p.c, &p.algo, workspace_,
                                 workspace_bytes_, stream_),
                  "cublasLtMatmul");
}

std::string Blas::gemm_batched(bool transA, bool transB, int64_t M, int64_t N, int64_t K, float alpha,
                               const float* A, int64_t lda, int64_t strideA, const float* B, int64_t ldb,
                               int64_t strideB, float beta, float* C, int64_t ldc, int64_t strideC, int64_t batch) {
  if (M <= 0 || N <= 0 || batch <= 0) return "";
  // the same column-major swap as gemm()
  return lt_error(cublasGemmStridedBatchedEx(blas_, transB ? CUBLAS_OP_T : CUBLAS_OP_N, transA ? CUBLAS_OP_T : CUBLAS_OP_N,
                                             (int)N, (int)M, (int)K, &alpha, B, CUDA_R_32F, (int)ldb, strideB, A,
                                             CUDA_R_32F, (int)lda, strideA, &beta, C, CUDA_R_32F, (int)ldc, strideC,
                                             (int)batch, CUBLAS_COMPUTE_32F_PEDANTIC, CUBLAS_GEMM_DEFAULT),
                  "cublasGemmStridedBatchedEx");
}

}  // namespace cuda
}  // namespace er
