// Argument helpers shared by the binding files. The TypeScript side checks arguments
// first with precise messages; these checks are the second line, and they are what
// keeps a caller who goes around the TypeScript API (or passes something odd through
// it) from crashing the process: every number is range-checked before it becomes a
// size or an offset, every typed array is checked for its element type and length,
// and every wrapped object is checked for its type tag before it is unwrapped.
#pragma once
#include <napi.h>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <new>
#include <string>

#define THROW_IF(cond, msg)                                        \
  do {                                                             \
    if (cond) throw Napi::TypeError::New(info.Env(), (msg));       \
  } while (0)

namespace er_binding {

// Type tags of the wrapped classes (napi_type_tag_object): an object is unwrapped as
// a class only when it carries that class's tag, so a StoreReader can never be taken
// for an Encoder, nor a plain object built on a class's prototype for an instance.
inline constexpr napi_type_tag kEncoderTag = {0x6572456e636f6465ULL, 0x7201a4c3b9e2d5f1ULL};
inline constexpr napi_type_tag kWriterTag = {0x6572577269746572ULL, 0x7202b5d4cae3e6f2ULL};
inline constexpr napi_type_tag kReaderTag = {0x6572526561646572ULL, 0x7203c6e5dbf4f7f3ULL};
inline constexpr napi_type_tag kPrefetcherTag = {0x6572507265666574ULL, 0x7204d7f6ec05f8f4ULL};
inline constexpr napi_type_tag kTaskModelTag = {0x65725461736b4d6fULL, 0x7205e807fd16f9f5ULL};
inline constexpr napi_type_tag kSqliteDbTag = {0x6572537146646244ULL, 0x7206f918fe270af6ULL};
inline constexpr napi_type_tag kSqliteStmtTag = {0x6572537153746d74ULL, 0x72070a290f381bf7ULL};

inline void tag_object(const Napi::Object& o, const napi_type_tag& tag) {
  napi_status s = napi_type_tag_object(o.Env(), o, &tag);
  if (s != napi_ok) throw Napi::Error::New(o.Env(), "internal error: cannot tag a native object");
}

inline bool has_tag(const Napi::Value& v, const napi_type_tag& tag) {
  if (!v.IsObject()) return false;
  bool ok = false;
  napi_status s = napi_check_object_type_tag(v.Env(), v, &tag, &ok);
  return s == napi_ok && ok;
}

// The wrapped instance behind `v`, which must carry `tag`; throws a TypeError naming `what`.
template <typename W>
W* unwrap_tagged(const Napi::Value& v, const napi_type_tag& tag, const char* what) {
  if (!has_tag(v, tag)) throw Napi::TypeError::New(v.Env(), std::string("expected a ") + what);
  W* w = Napi::ObjectWrap<W>::Unwrap(v.As<Napi::Object>());
  if (!w) throw Napi::TypeError::New(v.Env(), std::string("expected a ") + what);
  return w;
}

// Instance methods check their receiver first: `Class.prototype.method.call(other)`
// must not reinterpret another class's native object.
inline void check_this(const Napi::CallbackInfo& info, const napi_type_tag& tag, const char* what) {
  if (!has_tag(info.This(), tag))
    throw Napi::TypeError::New(info.Env(), std::string("this method must be called on a ") + what);
}

// A number that must be an integer in [lo, hi]; throws a RangeError naming `what`.
inline int64_t get_int(const Napi::Value& v, const char* what, int64_t lo, int64_t hi) {
  if (!v.IsNumber()) throw Napi::TypeError::New(v.Env(), std::string(what) + " must be a number");
  double d = v.As<Napi::Number>().DoubleValue();
  if (!std::isfinite(d) || d != std::floor(d) || d < (double)lo || d > (double)hi)
    throw Napi::RangeError::New(v.Env(), std::string(what) + " must be an integer in " + std::to_string(lo) +
                                             ".." + std::to_string(hi) + ", got " + Napi::Value(v).ToString().Utf8Value());
  return (int64_t)d;
}

inline double get_number(const Napi::Value& v, const char* what) {
  if (!v.IsNumber()) throw Napi::TypeError::New(v.Env(), std::string(what) + " must be a number");
  double d = v.As<Napi::Number>().DoubleValue();
  if (!std::isfinite(d)) throw Napi::RangeError::New(v.Env(), std::string(what) + " must be finite");
  return d;
}

// Largest batch dimension and element count accepted at the boundary: far above any real
// batch, low enough that products of them never overflow 64 bits.
constexpr int64_t kMaxDim = int64_t(1) << 31;
constexpr uint64_t kMaxElements = uint64_t(1) << 40;

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
  Napi::ArrayBuffer ab = a.ArrayBuffer();
  if (expect != 0 && expect != (size_t)-1 && ab.Data() == nullptr)
    throw Napi::TypeError::New(v.Env(), std::string(what) + " is detached (its buffer was released)");
  return reinterpret_cast<T*>(static_cast<uint8_t*>(ab.Data()) + a.ByteOffset());
}

// An allocation failure as a message a user can act on.
inline std::string alloc_message(const char* what, uint64_t bytes, const char* lower) {
  return std::string("cannot allocate ") + std::to_string(bytes) + " bytes for " + what + "; lower " + lower;
}

}  // namespace er_binding
