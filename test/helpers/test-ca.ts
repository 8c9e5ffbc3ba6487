// A throw-away CA and a server certificate signed by it, made with the openssl
// command line (the same tool an operator would use), for tests over real TLS.
import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

export interface TestCa {
  dir: string;
  caFile: string;
  certFile: string;
  keyFile: string;
  ca: string;
}

/** Makes ca.pem, server.pem and server.key in dir; the server certificate names the given DNS names and IPs. */
export function makeTestCa(dir: string, names: { dns?: string[]; ips?: string[] } = { dns: ['localhost'], ips: ['127.0.0.1'] }): TestCa {
  const openssl = (...args: string[]) => execFileSync('openssl', args, { cwd: dir, stdio: 'pipe' });
  const key = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
  openssl('req', '-x509', ...key, '-keyout', 'ca.key', '-out', 'ca.pem', '-days', '1', '-subj', '/CN=podflow-test-ca');
  openssl('req', ...key, '-keyout', 'server.key', '-out', 'server.csr', '-subj', '/CN=podflow-webhook');
  const san = [...(names.dns ?? []).map((d) => `DNS:${d}`), ...(names.ips ?? []).map((i) => `IP:${i}`)].join(',');
  writeFileSync(join(dir, 'san.ext'), `subjectAltName=${san}\nextendedKeyUsage=serverAuth\n`);
  openssl('x509', '-req', '-in', 'server.csr', '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial', '-out', 'server.pem', '-days', '1', '-extfile', 'san.ext');
  return { dir, caFile: join(dir, 'ca.pem'), certFile: join(dir, 'server.pem'), keyFile: join(dir, 'server.key'), ca: readFileSync(join(dir, 'ca.pem'), 'utf8') };
}
