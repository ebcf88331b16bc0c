"use strict";
// A small ZIP writer for zipping a folder in the browser: STORE method (no compression), UTF-8
// names. Files are read once for their CRC-32; the archive Blob refers to the File objects
// themselves, so a large folder is not held in memory twice.
(function () {
  const TABLE = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    TABLE[n] = c >>> 0;
  }

  function crc32(bytes, crc) {
    let c = (crc === undefined ? 0 : crc) ^ 0xffffffff;
    for (let i = 0; i < bytes.length; i++) c = TABLE[(c ^ bytes[i]) & 0xff] ^ (c >>> 8);
    return (c ^ 0xffffffff) >>> 0;
  }

  function dosDateTime(date) {
    const time = (date.getHours() << 11) | (date.getMinutes() << 5) | Math.floor(date.getSeconds() / 2);
    const day = ((Math.max(date.getFullYear(), 1980) - 1980) << 9) | ((date.getMonth() + 1) << 5) | date.getDate();
    return [time, day];
  }

  async function fileCrc(file) {
    let crc = 0;
    const chunk = 4 * 1024 * 1024;
    for (let start = 0; start < file.size; start += chunk) {
      const bytes = new Uint8Array(await file.slice(start, start + chunk).arrayBuffer());
      crc = crc32(bytes, crc);
    }
    return crc;
  }

  // entries: [{name: "folder/index.html", file: File}] -> Blob (application/zip)
  async function makeZip(entries, onFile) {
    if (entries.length > 65535) throw new Error("too many files for a ZIP without ZIP64 (65535 at most)");
    const encoder = new TextEncoder();
    const parts = [];
    const central = [];
    let offset = 0;
    let done = 0;
    for (const entry of entries) {
      const name = encoder.encode(entry.name);
      const size = entry.file.size;
      if (size >= 0xffffffff || offset >= 0xffffffff) throw new Error("the folder is too large to zip in the browser (4 GiB)");
      const crc = await fileCrc(entry.file);
      const [time, day] = dosDateTime(new Date(entry.file.lastModified || Date.now()));
      const local = new DataView(new ArrayBuffer(30));
      local.setUint32(0, 0x04034b50, true);
      local.setUint16(4, 20, true);
      local.setUint16(6, 0x0800, true); // names are UTF-8
      local.setUint16(8, 0, true); // STORE
      local.setUint16(10, time, true);
      local.setUint16(12, day, true);
      local.setUint32(14, crc, true);
      local.setUint32(18, size, true);
      local.setUint32(22, size, true);
      local.setUint16(26, name.length, true);
      local.setUint16(28, 0, true);
      parts.push(local.buffer, name, entry.file);
      const head = new DataView(new ArrayBuffer(46));
      head.setUint32(0, 0x02014b50, true);
      head.setUint16(4, 20, true);
      head.setUint16(6, 20, true);
      head.setUint16(8, 0x0800, true);
      head.setUint16(10, 0, true);
      head.setUint16(12, time, true);
      head.setUint16(14, day, true);
      head.setUint32(16, crc, true);
      head.setUint32(20, size, true);
      head.setUint32(24, size, true);
      head.setUint16(28, name.length, true);
      head.setUint32(42, offset, true);
      central.push(head.buffer, name);
      offset += 30 + name.length + size;
      done += 1;
      if (onFile) onFile(done, entries.length);
    }
    let centralSize = 0;
    for (const piece of central) centralSize += piece.byteLength;
    const end = new DataView(new ArrayBuffer(22));
    end.setUint32(0, 0x06054b50, true);
    end.setUint16(8, entries.length, true);
    end.setUint16(10, entries.length, true);
    end.setUint32(12, centralSize, true);
    end.setUint32(16, offset, true);
    return new Blob([...parts, ...central, end.buffer], { type: "application/zip" });
  }

  window.DropHostZip = { makeZip: makeZip, crc32: crc32 };
})();
