/** The egress proxy's idea of "inside the server": every spelling of an internal address is refused. */
import { BlockList } from "node:net";
import { describe, expect, it } from "vitest";
import { isInternal } from "../src/egress.ts";

describe("isInternal", () => {
  it.each([
    "127.0.0.1",
    "127.255.255.254",
    "10.1.2.3",
    "172.16.0.1",
    "172.31.255.255",
    "192.168.1.1",
    "169.254.169.254",
    "100.64.0.1",
    "0.0.0.0",
    "::1",
    "0:0:0:0:0:0:0:1",
    "0000:0000::0001",
    "::",
    "::ffff:127.0.0.1",
    "::ffff:7f00:1",
    "::FFFF:A9FE:A9FE",
    "::ffff:10.0.0.1",
    "::127.0.0.1",
    "fd00::1",
    "FC12:3456::1",
    "fe80::1",
    "FE80:0:0:0:0:0:0:1",
    "not-an-address",
  ])("refuses %s", (address) => {
    expect(isInternal(address)).toBe(true);
  });

  it.each(["8.8.8.8", "172.32.0.1", "192.169.0.1", "100.128.0.1", "2001:db8::1", "2606:4700::1111", "::ffff:8.8.8.8"])("lets %s through", (address) => {
    expect(isInternal(address)).toBe(false);
  });

  it("counts the server's own addresses as inside, however they are written", () => {
    const own = new BlockList();
    own.addAddress("203.0.113.7", "ipv4");
    own.addAddress("2001:db8:1::7", "ipv6");
    expect(isInternal("203.0.113.7", own)).toBe(true);
    expect(isInternal("2001:0db8:0001:0000:0000:0000:0000:0007", own)).toBe(true);
    expect(isInternal("203.0.113.8", own)).toBe(false);
  });
});
