// What the agent's (agent/config.ts) and the webhook's (agent/webhook.ts)
// configuration loaders share: the tree a YAML file parses to, the merge of
// defaults < file < overrides, and the schema pieces both files spell alike.

export type Tree = Record<string, unknown>;

/** A JSON Schema object that refuses keys it does not name: a typo in a ConfigMap is an error, not a silent default. */
export const objectSchema = (properties: Record<string, object>, required: string[] = []) =>
  ({ type: 'object', additionalProperties: false, properties, required }) as const;

/** HOST:PORT, [IPv6]:PORT or :PORT (every address). */
export const listenSchema = { type: 'string', pattern: '^(\\[[0-9a-fA-F:.]+\\]|[^:\\s]*):[0-9]{1,5}$' } as const;

/** pino's levels. */
export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

export const logSchema = objectSchema({ level: { enum: LOG_LEVELS } });

/** Objects merge key by key; anything else (arrays included) from `from` replaces what `into` has. */
export function deepMerge(into: Tree, from: Tree): void {
  for (const [k, v] of Object.entries(from)) {
    if (v && typeof v === 'object' && !Array.isArray(v) && into[k] && typeof into[k] === 'object' && !Array.isArray(into[k])) deepMerge(into[k] as Tree, v as Tree);
    else into[k] = v;
  }
}
