// Numbers as people read them on the page.

const PREFIXES = ['', 'K', 'M', 'G', 'T'];

/** 1234567 → ["1.2", "M"] (decimal prefixes, as network tools show rates). */
function scaled(n: number): [string, string] {
  let i = 0;
  while (Math.abs(n) >= 1000 && i < PREFIXES.length - 1) {
    n /= 1000;
    i++;
  }
  return [n >= 100 || i === 0 ? String(Math.round(n)) : n.toFixed(1), PREFIXES[i]!];
}

export function count(n: number): string {
  const [value, prefix] = scaled(n);
  return prefix ? `${value} ${prefix}` : value;
}

export function bytes(n: number): string {
  const [value, prefix] = scaled(n);
  return `${value} ${prefix}B`;
}

export function rate(n: number, metric: 'bytes' | 'packets'): string {
  return metric === 'bytes' ? `${bytes(n)}/s` : `${count(n)} pkt/s`;
}

export function clock(ms: number): string {
  return new Date(ms).toTimeString().slice(0, 8);
}

/** Milliseconds with the precision a round trip needs: 0.042 ms inside a node, 12.3 ms across a region. */
export function ms(n: number): string {
  return `${n < 1 ? n.toFixed(3) : n < 10 ? n.toFixed(2) : n.toFixed(1)} ms`;
}
