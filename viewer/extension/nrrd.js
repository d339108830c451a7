// NRRD as our server writes a label (uint8, raw or gzip), parsed in the browser: header fields and voxels.
// Voxels run i fastest, then j, then k — the order of a DICOM frame's pixels, slice after slice.

const TYPES = { uchar: Uint8Array, uint8: Uint8Array, uint8_t: Uint8Array, 'unsigned char': Uint8Array };

function vector(text) {
  return text.replace(/[()]/g, '').split(',').map(Number);
}

async function gunzip(bytes) {
  const stream = new Blob([bytes]).stream().pipeThrough(new DecompressionStream('gzip'));
  return new Uint8Array(await new Response(stream).arrayBuffer());
}

/** Parse an NRRD file (an ArrayBuffer) into { sizes, origin, directions, data, fields }. */
export async function parseNrrd(buffer) {
  const bytes = new Uint8Array(buffer);
  let end = -1;
  for (let n = 0; n + 1 < bytes.length; n++) {
    if (bytes[n] === 10 && bytes[n + 1] === 10) { end = n; break; }
  }
  if (end < 0 || String.fromCharCode(...bytes.subarray(0, 4)) !== 'NRRD') {
    throw new Error('the server answered a label that is not an NRRD file');
  }
  const fields = {};
  for (const line of new TextDecoder().decode(bytes.subarray(0, end)).split('\n').slice(1)) {
    const at = line.indexOf(': ');
    if (line.startsWith('#') || at < 0) continue;
    fields[line.slice(0, at).trim().toLowerCase()] = line.slice(at + 2).trim();
  }
  const Type = TYPES[fields.type];
  if (!Type) throw new Error(`the label's voxel type ${fields.type} is not supported by the viewer`);
  const sizes = fields.sizes.split(/\s+/).map(Number);
  let data = bytes.subarray(end + 2);
  if (fields.encoding === 'gzip' || fields.encoding === 'gz') data = await gunzip(data);
  else if (fields.encoding !== 'raw') throw new Error(`the label's NRRD encoding ${fields.encoding} is not supported`);
  const count = sizes.reduce((a, b) => a * b, 1);
  if (data.length !== count) throw new Error(`the label holds ${data.length} voxels, its header says ${count}`);
  const directions = fields['space directions']
    ? fields['space directions'].match(/\([^)]*\)/g).map(vector)
    : [[1, 0, 0], [0, 1, 0], [0, 0, 1]];
  const origin = fields['space origin'] ? vector(fields['space origin']) : [0, 0, 0];
  return { sizes, origin, directions, data: new Type(data.buffer, data.byteOffset, count), fields };
}

async function gzip(bytes) {
  const stream = new Blob([bytes]).stream().pipeThrough(new CompressionStream('gzip'));
  return new Uint8Array(await new Response(stream).arrayBuffer());
}

const triple = v => `(${v.map(x => Number(x).toPrecision(12).replace(/\.?0+$/, '')).join(',')})`;

/** A uint8 label volume as a gzip-encoded NRRD on the grid ``{ sizes, origin, directions }`` (LPS, as DICOM). */
export async function writeNrrd({ sizes, origin, directions }, data) {
  const header = [
    'NRRD0004', 'type: uint8', 'dimension: 3', 'space: left-posterior-superior', `sizes: ${sizes.join(' ')}`,
    `space directions: ${directions.map(triple).join(' ')}`, 'kinds: domain domain domain', 'endian: little',
    'encoding: gzip', `space origin: ${triple(origin)}`, '', '',
  ].join('\n');
  return new Blob([header, await gzip(data)], { type: 'application/octet-stream' });
}
