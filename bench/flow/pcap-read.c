/* The ceiling for reading a pcap file: libpcap's own record loop and nothing
 * else. Compiled by bench/flow/replay.bench.ts at bench time with
 *   cc -O2 -o DIR/pcap-read bench/flow/pcap-read.c -lpcap
 * Prints the number of packets read and the bytes captured (so the loop
 * touches every record and cannot be optimised away). */
#include <pcap/pcap.h>
#include <stdio.h>

int main(int argc, char **argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: %s FILE.pcap\n", argv[0]);
    return 2;
  }
  char err[PCAP_ERRBUF_SIZE];
  pcap_t *p = pcap_open_offline(argv[1], err);
  if (p == NULL) {
    fprintf(stderr, "pcap-read: %s\n", err);
    return 1;
  }
  struct pcap_pkthdr *h;
  const u_char *data;
  unsigned long long packets = 0, captured = 0;
  int rc;
  while ((rc = pcap_next_ex(p, &h, &data)) == 1) {
    packets++;
    captured += h->caplen + data[0];
  }
  if (rc == PCAP_ERROR) {
    fprintf(stderr, "pcap-read: %s\n", pcap_geterr(p));
    pcap_close(p);
    return 1;
  }
  printf("{\"packets\":%llu,\"captured\":%llu}\n", packets, captured);
  pcap_close(p);
  return 0;
}
