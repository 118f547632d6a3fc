// Stand-in cuBLAS types for the emulated GPU backend (see cuda_runtime.h here)
#pragma once
typedef struct ErEmulatedBlas* cublasHandle_t;
typedef enum { CUBLAS_STATUS_SUCCESS = 0 } cublasStatus_t;
