// A colour per series key that stays the same while the page is open (a node
// keeps its colour as others come and go): Tableau 10, then repeated.
const PALETTE = ['#4e79a7', '#f28e2b', '#e15759', '#76b7b2', '#59a14f', '#edc948', '#b07aa1', '#ff9da7', '#9c755f', '#bab0ac'];
export const OTHER_COLOUR = '#d4d4d4';
const assigned = new Map<string, string>();

export function colourOf(key: string): string {
  let colour = assigned.get(key);
  if (!colour) {
    colour = PALETTE[assigned.size % PALETTE.length]!;
    assigned.set(key, colour);
  }
  return colour;
}
