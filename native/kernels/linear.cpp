#include "kernels/linear.h"
#include <dnnl.hpp>
#include "kernels/ops.h"

namespace er {

using dt = dnnl::memory::data_type;
using tag = dnnl::memory::format_tag;

dnnl::engine& onednn_engine() {
  static dnnl::engine eng(dnnl::engine::kind::cpu, 0);
  return eng;
}

struct Linear::Impl {
  const float* w32;
  const float* b32;
  std::vector<uint16_t> w16;  // bf16 copy of the weight (OC, C), when bf16
  std::mutex mu;
  struct Prim {
    dnnl::matmul::primitive_desc pd;
    dnnl::matmul prim;
  };
  std::map<std::pair<int64_t, int32_t>, Prim> prims;  // by (N, act)
  // prepacked weights, one per layout the primitives asked for (usually one)
  std::vector<std::pair<dnnl::memory::desc, dnnl::memory>> packed;
};

Linear::Linear(const float* weight, const float* bias, int64_t C, int64_t OC, bool bf16)
    : impl_(new Impl), C_(C), OC_(OC), bf16_(bf16) {
  impl_->w32 = weight;
  impl_->b32 = bias;
  if (bf16) {
    impl_->w16.resize((size_t)C * OC);
    ops().f32_to_bf16(impl_->w16.data(), weight, C * OC);
  }
}

Linear::~Linear() = default;

uint64_t Linear::packed_bytes() const {
  uint64_t n = impl_->w16.size() * 2;
  for (auto& p : impl_->packed) n += p.first.get_size();
  return n;
}

std::string Linear::forward(float* out, const void* inp, int64_t N, LinearAct act) {
  if (N == 0) return "";
  try {
    dnnl::engine& eng = onednn_engine();
    Impl& m = *impl_;
    std::lock_guard<std::mutex> lock(m.mu);
    auto key = std::make_pair(N, (int32_t)act);
    auto it = m.prims.find(key);
    if (it == m.prims.end()) {
      if (m.prims.size() >= 64) m.prims.clear();  // bounded: shapes vary with batch and length
      const dt in_t = bf16_ ? dt::bf16 : dt::f32;
      dnnl::memory::desc src({N, C_}, in_t, tag::ab);
      dnnl::memory::desc wei({C_, OC_}, in_t, tag::any);
      dnnl::memory::desc dst({N, OC_}, dt::f32, tag::ab);
      dnnl::post_ops po;
      if (act == LinearAct::Gelu) po.append_eltwise(1.0f, dnnl::algorithm::eltwise_gelu_erf, 0.f, 0.f);
      dnnl::primitive_attr attr;
      attr.set_post_ops(po);
      dnnl::matmul::primitive_desc pd;
      if (m.b32) {
        dnnl::memory::desc bias({1, OC_}, dt::f32, tag::ab);
        pd = dnnl::matmul::primitive_desc(dnnl::matmul::desc(src, wei, bias, dst), attr, eng);
      } else {
        pd = dnnl::matmul::primitive_desc(dnnl::matmul::desc(src, wei, dst), attr, eng);
      }
      it = m.prims.emplace(key, Impl::Prim{pd, dnnl::matmul(pd)}).first;
    }
    const dnnl::matmul::primitive_desc& pd = it->second.pd;
    dnnl::memory* wmem = nullptr;
    for (auto& p : m.packed)
      if (p.first == pd.weights_desc()) wmem = &p.second;
    dnnl::stream s(eng);
    if (!wmem) {
      // reorder the (OC, C) row-major weight, seen as (C, OC) with layout "ba", once
      dnnl::memory::desc plain({C_, OC_}, bf16_ ? dt::bf16 : dt::f32, tag::ba);
      void* src = bf16_ ? (void*)m.w16.data() : (void*)m.w32;
      dnnl::memory from(plain, eng, src);
      dnnl::memory to(pd.weights_desc(), eng);
      dnnl::reorder(from, to).execute(s, from, to);
      s.wait();
      m.packed.emplace_back(pd.weights_desc(), to);
      wmem = &m.packed.back().second;
    }
    dnnl::memory msrc(pd.src_desc(), eng, const_cast<void*>(inp));
    dnnl::memory mdst(pd.dst_desc(), eng, out);
    std::unordered_map<int, dnnl::memory> args = {
        {DNNL_ARG_SRC, msrc}, {DNNL_ARG_WEIGHTS, *wmem}, {DNNL_ARG_DST, mdst}};
    if (m.b32) args.emplace(DNNL_ARG_BIAS, dnnl::memory(pd.bias_desc(), eng, const_cast<float*>(m.b32)));
    it->second.prim.execute(s, args);
    s.wait();
  } catch (const dnnl::error& e) {
    return std::string("oneDNN matmul failed: ") + e.what();
  }
  return "";
}

std::string linear_impl_info(bool bf16) {
  try {
    const dt t = bf16 ? dt::bf16 : dt::f32;
    dnnl::memory::desc src({512, 768}, t, tag::ab), wei({768, 768}, t, tag::any), dst({512, 768}, dt::f32, tag::ab);
    dnnl::matmul::primitive_desc pd(dnnl::matmul::desc(src, wei, dst), onednn_engine());
    return pd.impl_info_str();
  } catch (const dnnl::error& e) {
    return std::string("unavailable: ") + e.what();
  }
}

}  // namespace er
