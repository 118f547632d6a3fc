// Stand-in cuBLASLt types for the emulated GPU backend (see cuda_runtime.h here)
#pragma once
#include "cublas_v2.h"
typedef struct ErEmulatedLt* cublasLtHandle_t;
