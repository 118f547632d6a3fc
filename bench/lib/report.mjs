// Renders a benchmark result (the object bench/encoder.mjs writes as JSON) as a markdown report.
import { fmtMs, fmtNum, fmtPct, fmtRatio } from './stats.mjs';

export const ENGINE_LABELS = {
  ours: 'ours (embedding-recycler)',
  torch: 'PyTorch',
  ort: 'onnxruntime-node',
  'ort-fused': 'onnxruntime-node, fused graph',
};
const SHORT = { ours: 'ours', torch: 'PyTorch', ort: 'ORT', 'ort-fused': 'ORT fused' };

function table(header, rows) {
  const out = [`| ${header.join(' | ')} |`, `|${header.map((h, i) => (i === 0 ? ' --- ' : ' ---: ')).join('|')}|`];
  for (const r of rows) out.push(`| ${r.join(' | ')} |`);
  return out.join('\n');
}

export function renderMarkdown(res) {
  const m = res.meta;
  const engines = m.engines;
  const peers = engines.filter((e) => e !== 'ours');
  const L = [];
  L.push(`# Encoder benchmark, ${m.date}${m.quick ? ' (QUICK smoke run: small shapes, 1 rep, not a measurement)' : ''}`);
  L.push('');
  const cpu = m.cpu;
  L.push(`- **CPU**: ${cpu.model} (vendor ${cpu.vendor}, family ${cpu.family}, model ${cpu.modelNumber}, stepping ${cpu.stepping}${cpu.hypervisor ? ', under a hypervisor' : ''}); SIMD: ${cpu.simd.join(' ') || 'n/a'}`);
  L.push(`- **Threads**: ${m.threads} per engine (nproc ${m.nproc}, logical CPUs in /proc/cpuinfo ${cpu.logicalCpus}); load average at start ${m.loadAverage.start.join(' / ')}, at end ${m.loadAverage.end ? m.loadAverage.end.join(' / ') : 'n/a'}`);
  const v = m.versions;
  L.push(`- **Versions**: embedding-recycler ${v.package} (git ${v.git.commit ?? 'n/a'}${v.git.dirty ? ', with uncommitted changes' : ''}), GEMM ${v.cpuInfo?.gemm ?? 'n/a'}, kernels ${v.cpuInfo?.kernels ?? 'n/a'}; PyTorch ${v.torch} (transformers ${v.transformers}, CPU capability ${v.torchCpuCapability}); onnxruntime-node ${v.onnxruntimeNode}; Node ${v.node}; Python ${v.python}`);
  const p = m.precision;
  L.push(`- **Precision**: requested \`${p.requested}\` for ours (passed as \`Encoder.load(dir, { threads, precision })\`); the encoder reports: ${p.reported ?? '(nothing: the option may not be implemented yet, in which case ours ran fp32)'}. Peers run fp32.`);
  L.push(`- **Method**: median of the timed forwards per engine and workload (${m.repsText}), engines interleaved rep by rep (order rotated each rep, ${m.gapMs} ms pause between runs); PyTorch: \`${m.torch.gradMode}\`, attention \`${m.torch.attn ?? 'n/a'}\`, linear layers on ${m.torch.mkldnn ? 'oneDNN (`torch.utils.mkldnn.to_mkldnn`, --torch-mkldnn)' : 'MKL sgemm (the default)'}; ORT: intraOpNumThreads ${m.threads}, interOpNumThreads 1, graphOptimizationLevel 'all'. Inputs: no padding, token types 0.`);
  L.push(`- **Run time**: ${fmtNum(m.durationS, 0)} s`);
  const noisy = [];
  for (const mod of res.models) {
    for (const g of mod.gemm) {
      const c = g.contention;
      if (c && c.foreign + c.steal > 0.05) noisy.push(`${mod.label} GEMM timing at M = ${g.m} (other processes ${fmtPct(c.foreign)}, steal ${fmtPct(c.steal)})`);
    }
    for (const w of mod.workloads) {
      const c = w.contention;
      if (c && c.foreign + c.steal > 0.05) noisy.push(`${mod.label} ${w.batch} x ${w.seq} (other processes ${fmtPct(c.foreign)}, steal ${fmtPct(c.steal)})`);
    }
  }
  if (m.contention) L.push(`- **Contention**: other processes used ${fmtPct(m.contention.foreign)} of the CPU time over the whole run, the hypervisor stole ${fmtPct(m.contention.steal)}`);
  if (noisy.length) L.push(`- **WARNING: the machine was not quiet** during ${noisy.join('; ')}: with ${m.nproc} cores, a foreign process slows OpenMP engines out of proportion; rerun those numbers on a quiet machine.`);
  L.push('');

  L.push('## Full-encoder forward, ms per batch (median; lower is better)');
  L.push('');
  L.push(`Ratios are peer time / our time: above 1.00x means ours is faster.`);
  L.push('');
  {
    const header = ['Model', 'Batch x seq', 'GFLOP / forward', ...engines.map((e) => `${SHORT[e]} ms`), ...peers.map((e) => `${SHORT[e]} / ours`)];
    const rows = [];
    for (const mod of res.models) {
      for (const w of mod.workloads) {
        const ours = w.engines.ours?.medianMs;
        rows.push([
          mod.label,
          `${w.batch} x ${w.seq}`,
          fmtNum(w.flops.total / 1e9, 1),
          ...engines.map((e) => fmtMs(w.engines[e]?.medianMs)),
          ...peers.map((e) => fmtRatio(w.engines[e]?.medianMs / ours)),
        ]);
      }
    }
    L.push(table(header, rows));
  }
  L.push('');

  L.push('## Fraction of the fp32 GEMM peak (model FLOPs / time / peak)');
  L.push('');
  L.push(`Peak = the best fp32 GEMM rate measured on this machine at the model's own GEMM shapes (one layer's mix: 4 x HxH, IxH, HxI at M = batch x seq), over the libraries below. Model FLOPs count the matrix products only (${'`'}2*M*(4H^2 + 2HI) + 4*B*T^2*H${'`'} per layer), so 100% is what a perfect engine whose every FLOP ran at GEMM speed would reach.`);
  L.push('');
  {
    const header = ['Model', 'Batch x seq', 'fp32 peak GFLOP/s', ...engines.map((e) => `${SHORT[e]}`)];
    if (m.precision.requested === 'bf16') header.push('ours vs bf16 peak');
    const rows = [];
    for (const mod of res.models) {
      for (const w of mod.workloads) {
        const pk = w.peakFp32;
        const row = [
          mod.label,
          `${w.batch} x ${w.seq}`,
          pk ? `${fmtNum(pk.gflops, 0)} (${pk.source})` : 'n/a',
          ...engines.map((e) => {
            const r = w.engines[e];
            return r ? `${fmtNum(r.gflops, 0)} GFLOP/s = ${fmtPct(r.fractionOfFp32Peak)}` : 'n/a';
          }),
        ];
        if (m.precision.requested === 'bf16') {
          row.push(w.peakBf16 ? `${fmtPct(w.engines.ours?.fractionOfBf16Peak)} of ${fmtNum(w.peakBf16.gflops, 0)} (${w.peakBf16.source})` : 'n/a');
        }
        rows.push(row);
      }
    }
    L.push(table(header, rows));
  }
  L.push('');

  L.push('## GEMM ceiling, GFLOP/s (median)');
  L.push('');
  L.push(`oneDNN = the library the addon links, called through the same \`dnnl_sgemm('N','T', ...)\` the engine uses (bf16: \`dnnl_gemm_bf16bf16f32\`); PyTorch = \`torch.matmul\` (MKL / oneDNN inside PyTorch). Same threads.`);
  L.push('');
  {
    const header = ['Model', 'GEMM (M x N x K)', 'oneDNN fp32', 'PyTorch fp32', 'oneDNN bf16', 'PyTorch bf16'];
    const rows = [];
    for (const mod of res.models) {
      for (const g of mod.gemm) {
        const get = (lib, dt, i) => g[lib]?.[dt]?.shapes?.[i]?.gflops;
        const base = g.onednn?.fp32?.shapes ?? g.torch?.fp32?.shapes ?? [];
        base.forEach((s, i) => {
          rows.push([mod.label, `${s.name}: ${s.M} x ${s.N} x ${s.K}`, fmtNum(get('onednn', 'fp32', i)), fmtNum(get('torch', 'fp32', i)), fmtNum(get('onednn', 'bf16', i)), fmtNum(get('torch', 'bf16', i))]);
        });
        const mix = (lib, dt) => g[lib]?.[dt]?.layerMixGflops;
        rows.push([mod.label, `**layer mix** (M = ${g.m})`, `**${fmtNum(mix('onednn', 'fp32'))}**`, `**${fmtNum(mix('torch', 'fp32'))}**`, `**${fmtNum(mix('onednn', 'bf16'))}**`, `**${fmtNum(mix('torch', 'bf16'))}**`]);
      }
    }
    L.push(table(header, rows));
    if (!m.cpu.bf16) L.push('\nbf16: this CPU has neither avx512_bf16 nor amx_bf16.');
  }
  L.push('');

  L.push('## Spread and checks');
  L.push('');
  {
    const header = ['Model', 'Batch x seq', ...engines.map((e) => `${SHORT[e]} min-max ms (n)`), 'max abs diff vs ours'];
    const rows = [];
    for (const mod of res.models) {
      for (const w of mod.workloads) {
        rows.push([
          mod.label,
          `${w.batch} x ${w.seq}`,
          ...engines.map((e) => {
            const r = w.engines[e];
            return r ? `${fmtMs(r.minMs)}-${fmtMs(r.maxMs)} (${r.ms.length})` : 'n/a';
          }),
          Object.entries(w.check || {})
            .map(([k, d]) => `${SHORT[k] ?? k}: ${Number.isFinite(d) ? d.toExponential(1) : d}`)
            .join(', ') || 'n/a',
        ]);
      }
    }
    L.push(table(header, rows));
  }
  L.push('');
  L.push('Load times (s): ' + res.models.map((mod) => `${mod.label}: ` + engines.map((e) => `${SHORT[e]} ${fmtNum(mod.loadMs?.[e] / 1000, 2)}`).join(', ')).join('; '));
  L.push('');
  return L.join('\n');
}
