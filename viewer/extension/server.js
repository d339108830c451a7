// Our server's REST API as the viewer uses it. Requests carry the sign-in cookie (same origin); every failure
// becomes an Error whose message says what happened and what to do, for the panel to show.

const ADVICE = {
  401: 'You are signed out: reload the page to sign in again.',
  403: 'Your role may not do this; ask an administrator.',
  413: 'The request is too large for the server.',
  422: '',
  503: 'The model is still loading or busy; try again in a moment.',
};

export class ServerError extends Error {
  constructor(status, detail) {
    const advice = ADVICE[status] ?? '';
    const said = detail ? `: ${detail.trim().replace(/\.+$/, '')}` : '';
    super([`Server answered ${status}${said}.`, advice].filter(Boolean).join(' '));
    this.status = status;
  }
}

async function detailOf(response) {
  const text = await response.text();
  try {
    const detail = JSON.parse(text).detail;
    return typeof detail === 'string' ? detail : JSON.stringify(detail);
  } catch {
    return text.slice(0, 300);
  }
}

async function checked(response) {
  if (!response.ok) throw new ServerError(response.status, await detailOf(response));
  return response;
}

export function serverUrl() {
  return (window.config?.medicosam?.server || '').replace(/\/$/, '');
}

export async function fetchInfo() {
  const response = await checked(await fetch(`${serverUrl()}/info/`, { credentials: 'same-origin' }));
  return response.json();
}

/** Run model ``model`` on the series ``image`` with ``params``; returns { params, label (ArrayBuffer) }. */
export async function infer(model, image, params, signal) {
  const form = new FormData();
  form.append('params', JSON.stringify(params));
  const query = new URLSearchParams({ image, output: 'all' });
  const response = await checked(await fetch(`${serverUrl()}/infer/${encodeURIComponent(model)}?${query}`, {
    method: 'POST', body: form, credentials: 'same-origin', signal,
  }));
  const answer = await response.formData();
  const label = answer.get('image');
  if (!label) throw new Error(`the server answered no label for ${model}`);
  return { params: JSON.parse(answer.get('params') || '{}'), label: await label.arrayBuffer() };
}

/** Save ``label`` (an NRRD Blob) as the final label of series ``image``; returns the server's answer. */
export async function saveLabel(image, label, labelInfo) {
  const form = new FormData();
  form.append('label', label, 'label.nrrd');
  form.append('params', JSON.stringify({ label_info: labelInfo }));
  const query = new URLSearchParams({ image, tag: 'final' });
  const response = await checked(await fetch(`${serverUrl()}/datastore/label?${query}`, {
    method: 'PUT', body: form, credentials: 'same-origin',
  }));
  return response.json();
}

/** The next image to label by active-learning strategy ``strategy``: { id, ... }. */
export async function nextSample(strategy) {
  const response = await checked(await fetch(`${serverUrl()}/activelearning/${encodeURIComponent(strategy)}`, {
    method: 'POST', body: '{}', headers: { 'Content-Type': 'application/json' }, credentials: 'same-origin',
  }));
  return response.json();
}

/** The study holding series ``seriesUid``, asked of the PACS through the server's DICOMweb proxy. */
export async function studyOfSeries(seriesUid) {
  const query = new URLSearchParams({ SeriesInstanceUID: seriesUid, includefield: '0020000D' });
  const response = await checked(await fetch(`${serverUrl()}/proxy/dicom/qido/series?${query}`, {
    credentials: 'same-origin', headers: { Accept: 'application/dicom+json' },
  }));
  const [series] = await response.json();
  const study = series?.['0020000D']?.Value?.[0];
  if (!study) throw new Error(`the PACS does not know series ${seriesUid}`);
  return study;
}
