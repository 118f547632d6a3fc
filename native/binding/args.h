// Argument helpers shared by the binding files (cheap guards; the TypeScript side
// has already checked arguments with precise messages).
#pragma once
#include <napi.h>
#include <cstddef>
#include <cstdint>
#include <string>

#define THROW_IF(cond, msg)                                        \
  do {                                                             \
    if (cond) throw Napi::TypeError::New(info.Env(), (msg));       \
  } while (0)

namespace er_binding {

// The data of a typed array of the given type, read in place; `expect` elements
// (or any number when expect is (size_t)-1). Throws TypeError / RangeError naming `what`.
template <typename T>
T* array_data(const Napi::Value& v, napi_typedarray_type type, size_t expect, const char* what) {
  if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != type)
    throw Napi::TypeError::New(v.Env(), std::string(what) + " has the wrong array type");
  Napi::TypedArray a = v.As<Napi::TypedArray>();
  if (expect != (size_t)-1 && a.ElementLength() != expect)
    throw Napi::RangeError::New(v.Env(), std::string(what) + " has " + std::to_string(a.ElementLength()) +
                                             " elements, expected " + std::to_string(expect));
  return reinterpret_cast<T*>(static_cast<uint8_t*>(a.ArrayBuffer().Data()) + a.ByteOffset());
}

}  // namespace er_binding
