// The root logger of podflow's long-running commands (agent, webhook). One
// choice differs from pino's defaults: errors are serialized with their cause
// as a nested object (errWithCause) rather than with the causes' messages
// appended to their own. A PodflowError's message already says its cause
// ("...: ECONNRESET: closed by the collector"), which the default printed
// twice ("...: closed by the collector: closed by the collector").
import { type Logger, pino } from 'pino';

export function rootLogger(level: string, base?: object, destination?: pino.DestinationStream): Logger {
  const options = { level, serializers: { err: pino.stdSerializers.errWithCause }, ...(base && { base }) };
  return destination ? pino(options, destination) : pino(options);
}
