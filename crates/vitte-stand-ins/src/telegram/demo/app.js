// The demo chat page: a Telegram client in a private chat with the bot.
//
// Everything the user does goes through the stand-in's control API, which
// turns it into the Update a real client would cause; everything the bot did
// comes from the long-polled chat listing. The bot's text is never parsed as
// HTML: it is built into elements from the message entities.
'use strict';

(() => {
  const STORAGE_KEY = 'vitte-demo-user';
  /** How long one listing request waits for news on the server. */
  const POLL_WAIT_MS = 25000;
  /** Telegram shows a chat action for about five seconds. */
  const TYPING_MS = 5000;
  /** How long a button press or a payment waits for the bot's answer. */
  const ANSWER_WAIT_MS = 15000;

  const UI = {
    en: {
      bot: 'bot',
      typing: 'typing',
      connecting: 'connecting',
      placeholder: 'Message',
      menu: 'Menu',
      start: 'START',
      newUser: 'Start over as a new user',
      language: 'Language of your Telegram app (sent to the bot as language_code)',
      me: (name, id) => `You are ${name} (user id ${id})`,
      emptyTitle: 'No messages here yet…',
      emptyText: 'Press START to talk to the bot.',
      today: 'Today',
      yesterday: 'Yesterday',
      edited: 'edited',
      unsupported: 'This message is not supported by the demo.',
      unavailable: 'This button does nothing in the demo.',
      notDelivered: 'Not delivered. Click the message to send it again.',
      payTitle: 'Payment',
      payConfirm: (price) => `Pay ${price}?`,
      payLink: 'Pay this invoice?',
      pay: 'Pay',
      cancel: 'Cancel',
      ok: 'OK',
      paid: (price, bot) => `You paid ${price} to ${bot}`,
      payDeclined: 'The payment was declined.',
      noAnswer: 'The bot did not answer in time.',
      openLink: 'Open this link?',
      photo: 'Photo',
    },
    ru: {
      bot: 'бот',
      typing: 'печатает',
      connecting: 'соединение',
      placeholder: 'Сообщение',
      menu: 'Меню',
      start: 'ЗАПУСТИТЬ',
      newUser: 'Начать заново новым пользователем',
      language: 'Язык вашего Telegram (передаётся боту как language_code)',
      me: (name, id) => `Вы — ${name} (user id ${id})`,
      emptyTitle: 'Здесь пока ничего нет…',
      emptyText: 'Нажмите «Запустить», чтобы начать разговор.',
      today: 'Сегодня',
      yesterday: 'Вчера',
      edited: 'изменено',
      unsupported: 'Это сообщение демо показать не может.',
      unavailable: 'В демо эта кнопка ничего не делает.',
      notDelivered: 'Не доставлено. Нажмите на сообщение, чтобы отправить снова.',
      payTitle: 'Оплата',
      payConfirm: (price) => `Оплатить ${price}?`,
      payLink: 'Оплатить этот счёт?',
      pay: 'Оплатить',
      cancel: 'Отмена',
      ok: 'OK',
      paid: (price, bot) => `Вы оплатили ${price} для ${bot}`,
      payDeclined: 'Платёж отклонён.',
      noAnswer: 'Бот не ответил вовремя.',
      openLink: 'Открыть ссылку?',
      photo: 'Фото',
    },
  };

  /** The menu when the bot has not set one with setMyCommands. */
  const DEFAULT_COMMANDS = {
    en: [
      ['persona', 'Choose a companion'],
      ['reset', 'Start a fresh dialog'],
      ['retry', 'Write the last reply again'],
      ['help', 'How it works'],
      ['language', 'Change the language'],
    ],
    ru: [
      ['persona', 'Выбрать собеседника'],
      ['reset', 'Начать диалог заново'],
      ['retry', 'Переписать последний ответ'],
      ['help', 'Как это работает'],
      ['language', 'Сменить язык'],
    ],
  };

  const NAMES = {
    en: ['Anna', 'Max', 'Lena', 'Leo', 'Mia', 'Sam', 'Nora', 'Ivan', 'Eva', 'Tom', 'Zoe', 'Alex'],
    ru: ['Аня', 'Макс', 'Лена', 'Лёва', 'Мила', 'Саша', 'Нора', 'Иван', 'Ева', 'Тимур', 'Даша', 'Олег'],
  };

  const $ = (id) => document.getElementById(id);
  const el = {
    app: $('app'),
    botAvatars: document.querySelectorAll('.bot-avatar'),
    botName: $('bot-name'),
    status: $('bot-status'),
    me: $('me'),
    meAvatar: $('me-avatar'),
    meName: $('me-name'),
    langToggle: $('lang-toggle'),
    langCode: $('lang-code'),
    newUser: $('new-user'),
    chat: $('chat'),
    empty: $('empty'),
    emptyTitle: $('empty-title'),
    emptyText: $('empty-text'),
    messages: $('messages'),
    toBottom: $('to-bottom'),
    unread: $('unread'),
    suggest: $('suggest'),
    startBtn: $('start-btn'),
    composer: $('composer'),
    menuBtn: $('menu-btn'),
    menuLabel: $('menu-label'),
    input: $('input'),
    send: $('send'),
    toast: $('toast'),
    modal: $('modal'),
    modalTitle: $('modal-title'),
    modalText: $('modal-text'),
    modalOk: $('modal-ok'),
    modalCancel: $('modal-cancel'),
    viewer: $('viewer'),
    viewerImg: $('viewer-img'),
    viewerClose: $('viewer-close'),
  };

  // ---------- who we are ----------

  function pick(list) {
    return list[Math.floor(Math.random() * list.length)];
  }

  function browserLanguage() {
    return (navigator.language || 'en').toLowerCase().startsWith('ru') ? 'ru' : 'en';
  }

  function makeUser(lang) {
    // Positive and well inside both i64 and a JavaScript number.
    const id = 1000000000 + Math.floor(Math.random() * 8999999999);
    return { id, first_name: pick(NAMES[lang]), language_code: lang };
  }

  function loadUser() {
    try {
      const saved = JSON.parse(localStorage.getItem(STORAGE_KEY) || 'null');
      if (saved && Number.isSafeInteger(saved.id) && saved.id > 0 && typeof saved.first_name === 'string') {
        const lang = saved.language_code === 'ru' ? 'ru' : 'en';
        return { id: saved.id, first_name: saved.first_name || 'User', language_code: lang };
      }
    } catch (_) {
      // Storage unavailable or garbled: start as someone new.
    }
    return null;
  }

  function saveUser() {
    try {
      localStorage.setItem(STORAGE_KEY, JSON.stringify(user));
    } catch (_) {
      // Private mode: the user lasts as long as the tab.
    }
  }

  // ---------- state ----------

  let user = null;
  /** Bumped when the user changes, so work for the previous one stops. */
  let session = 0;
  let revision = 0;
  let loaded = false;
  let connected = true;
  let typingUntil = 0;
  /** Outgoing messages up to this id count as read (the bot reacted after them). */
  let readUpTo = 0;
  let unread = 0;
  let profile = { first_name: 'Vitte', username: '', commands: [] };
  /** message_id -> its row element. */
  const rows = new Map();
  /** Messages typed but not yet seen in the listing. */
  let outbox = [];
  let pollAbort = null;

  const t = () => UI[user.language_code] || UI.en;
  const locale = () => (user.language_code === 'ru' ? 'ru-RU' : 'en-GB');

  // ---------- the control API ----------

  async function api(method, path, body, signal) {
    const init = { method, signal, headers: {} };
    if (body !== undefined) {
      init.headers['content-type'] = 'application/json';
      init.body = JSON.stringify(body);
    }
    const response = await fetch(path, init);
    let data = null;
    try {
      data = await response.json();
    } catch (_) {
      data = null;
    }
    if (!response.ok) {
      throw new Error((data && data.error) || `HTTP ${response.status}`);
    }
    return data;
  }

  const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

  async function loadProfile() {
    const mine = session;
    const query = `chat_id=${user.id}&language_code=${encodeURIComponent(user.language_code)}`;
    try {
      const data = await api('GET', `/control/bot?${query}`);
      if (mine !== session) return;
      profile = data;
      renderHeader();
    } catch (_) {
      // Keep the last known name; the listing loop reports the connection.
    }
  }

  function commands() {
    if (profile.commands && profile.commands.length) {
      return profile.commands.map((c) => [c.command, c.description]);
    }
    return DEFAULT_COMMANDS[user.language_code] || DEFAULT_COMMANDS.en;
  }

  // ---------- the listing loop ----------

  async function pollLoop(mine) {
    let wait = 0;
    let failures = 0;
    while (mine === session) {
      const controller = new AbortController();
      pollAbort = controller;
      const timer = setTimeout(() => controller.abort(), wait + 10000);
      try {
        const path = `/control/chats/${user.id}/messages?after=${revision}&wait_ms=${wait}&include_user=true`;
        const log = await api('GET', path, undefined, controller.signal);
        if (mine !== session) return;
        if (log.revision < revision) {
          // The stand-in restarted and forgot the chat: start the view over.
          resetView();
          continue;
        }
        applyLog(log);
        revision = log.revision;
        setConnected(true);
        failures = 0;
        if (!loaded) {
          loaded = true;
          renderEmptyState();
          scrollToBottom(false);
        }
        wait = POLL_WAIT_MS;
      } catch (_) {
        if (mine !== session) return;
        failures += 1;
        setConnected(false);
        await sleep(Math.min(5000, 400 * failures));
      } finally {
        clearTimeout(timer);
      }
    }
  }

  function resetView() {
    rows.clear();
    el.messages.replaceChildren();
    outbox = [];
    revision = 0;
    readUpTo = 0;
    typingUntil = 0;
    unread = 0;
    loaded = false;
    renderFab();
  }

  function isFromBot(message) {
    return Boolean(message.from && message.from.is_bot);
  }

  function applyLog(log) {
    const stick = nearBottom();
    let newestBotDate = null;
    let newBot = 0;
    for (const message of log.messages) {
      const id = message.message_id;
      const fromBot = isFromBot(message);
      if (fromBot) readUpTo = Math.max(readUpTo, id);
      if (rows.has(id)) {
        replaceRow(id, message);
        continue;
      }
      if (!fromBot && adoptOutgoing(message)) continue;
      insertRow(id, renderRow(message, { appear: loaded }));
      if (fromBot) {
        newBot += 1;
        newestBotDate = message.date;
      }
    }
    for (const id of log.deleted_message_ids) {
      const row = rows.get(id);
      if (row) row.remove();
      rows.delete(id);
    }
    noteTyping(log.last_action, newestBotDate, newBot);
    if (log.messages.length || log.deleted_message_ids.length) {
      refreshLayout();
    } else {
      refreshTicks();
    }
    if (stick || !loaded) {
      scrollToBottom(loaded);
    } else if (newBot) {
      unread += newBot;
      renderFab();
    }
  }

  /** A chat action shows "typing…" for five seconds, or until the bot sends a message. */
  function noteTyping(action, newestBotDate, newBot) {
    if (action) {
      const nowMs = Date.now();
      // Dates are whole seconds: allow for the second that was cut off.
      const until = Math.min(nowMs + TYPING_MS, action.date * 1000 + TYPING_MS + 1000);
      const overtaken = newestBotDate !== null && newestBotDate >= action.date;
      typingUntil = overtaken ? 0 : until;
      // The bot is working on everything written so far.
      for (const id of rows.keys()) readUpTo = Math.max(readUpTo, id);
    } else if (newBot) {
      typingUntil = 0;
    }
    renderStatus();
  }

  function setConnected(value) {
    if (connected === value) return;
    connected = value;
    renderStatus();
  }

  // ---------- rows ----------

  function insertRow(id, row) {
    rows.set(id, row);
    for (const other of el.messages.children) {
      if (!other.classList.contains('row')) continue;
      const otherId = Number(other.dataset.messageId);
      if (!other.dataset.messageId || otherId > id) {
        el.messages.insertBefore(row, other);
        return;
      }
    }
    el.messages.append(row);
  }

  function replaceRow(id, message) {
    const old = rows.get(id);
    const row = renderRow(message, {});
    old.replaceWith(row);
    rows.set(id, row);
  }

  /** The listing shows a message typed here: it takes over the pending bubble. */
  function adoptOutgoing(message) {
    const entry = outbox.find((e) => e.id === message.message_id) ||
      outbox.find((e) => e.id === null && e.text === message.text);
    if (!entry) return false;
    outbox = outbox.filter((e) => e !== entry);
    const row = renderRow(message, {});
    entry.row.replaceWith(row);
    rows.set(message.message_id, row);
    return true;
  }

  function renderRow(message, { appear = false, status = null } = {}) {
    const fromBot = isFromBot(message);
    const row = document.createElement('div');
    row.className = `row ${fromBot ? 'in' : 'out'}`;
    if (appear) row.classList.add('appear');
    if (message.message_id) row.dataset.messageId = String(message.message_id);
    row.dataset.from = fromBot ? 'bot' : 'user';
    row.dataset.date = String(message.date);

    if (message.successful_payment) {
      row.className = 'row service';
      const pill = document.createElement('div');
      pill.className = 'service-pill';
      const paid = message.successful_payment;
      pill.textContent = t().paid(price(paid.currency, paid.total_amount), profile.first_name);
      row.append(pill);
      return row;
    }

    const msg = document.createElement('div');
    msg.className = 'msg';
    const bubble = document.createElement('div');
    bubble.className = 'bubble';
    msg.append(bubble);
    row.append(msg);

    let textHolder = null;
    if (Array.isArray(message.photo) && message.photo.length) {
      bubble.classList.add('media');
      const frame = renderPhoto(message.photo);
      const shown = frame.firstChild;
      // Telegram shows small pictures enlarged and large ones fitted.
      if (shown.width > 0) bubble.style.width = `${Math.min(360, Math.max(300, shown.width))}px`;
      bubble.append(frame);
      if (message.caption) {
        bubble.classList.add('with-caption');
        textHolder = document.createElement('div');
        textHolder.className = 'caption';
        renderEntities(textHolder, message.caption, message.caption_entities);
        bubble.append(textHolder);
      }
    } else if (message.voice) {
      const audio = document.createElement('audio');
      audio.className = 'voice';
      audio.controls = true;
      audio.preload = 'metadata';
      audio.src = fileUrl(message.voice.file_id);
      bubble.append(audio);
      textHolder = captionOf(message, bubble);
    } else if (message.document) {
      bubble.append(renderDocument(message.document));
      textHolder = captionOf(message, bubble);
    } else if (message.invoice) {
      bubble.append(renderInvoice(message.invoice));
    } else if (typeof message.text === 'string') {
      textHolder = document.createElement('div');
      textHolder.className = 'text';
      renderEntities(textHolder, message.text, message.entities);
      bubble.append(textHolder);
    } else {
      textHolder = document.createElement('div');
      textHolder.className = 'text';
      const em = document.createElement('em');
      em.textContent = t().unsupported;
      textHolder.append(em);
      bubble.append(textHolder);
    }

    if (message.edit_date) bubble.classList.add('edited');
    if (textHolder) {
      const space = document.createElement('span');
      space.className = 'meta-space';
      textHolder.append(space);
    }
    bubble.append(renderMeta(message, fromBot, status));

    const keyboard = renderKeyboard(message);
    if (keyboard) {
      msg.classList.add('has-kb');
      msg.append(keyboard);
    }
    if (!fromBot && status === 'failed') {
      row.classList.add('failed');
      row.title = t().notDelivered;
    }
    return row;
  }

  function captionOf(message, bubble) {
    if (!message.caption) return null;
    const holder = document.createElement('div');
    holder.className = 'text';
    renderEntities(holder, message.caption, message.caption_entities);
    bubble.append(holder);
    return holder;
  }

  function renderMeta(message, fromBot, status) {
    const meta = document.createElement('span');
    meta.className = 'meta';
    const date = new Date(message.date * 1000);
    meta.title = date.toLocaleString(locale());
    if (message.edit_date) {
      const edited = document.createElement('span');
      edited.textContent = t().edited;
      meta.append(edited);
    }
    const time = document.createElement('span');
    time.className = 'time';
    time.textContent = date.toLocaleTimeString(locale(), { hour: '2-digit', minute: '2-digit' });
    meta.append(time);
    if (!fromBot) {
      const state = status || (message.message_id <= readUpTo ? 'read' : 'sent');
      meta.append(tick(state));
    }
    return meta;
  }

  function icon(name, className) {
    const ns = 'http://www.w3.org/2000/svg';
    const svg = document.createElementNS(ns, 'svg');
    svg.setAttribute('class', className);
    svg.setAttribute('aria-hidden', 'true');
    const use = document.createElementNS(ns, 'use');
    use.setAttribute('href', `#${name}`);
    svg.append(use);
    return svg;
  }

  function tick(state) {
    const names = { pending: 'i-clock', sent: 'i-check', read: 'i-checks', failed: 'i-alert' };
    const extra = { pending: ' clock', failed: ' failed' };
    const svg = icon(names[state] || 'i-check', `tick${extra[state] || ''}`);
    svg.dataset.state = state;
    return svg;
  }

  /** Outgoing ticks move from one check to two once the bot reacted. */
  function refreshTicks() {
    for (const [id, row] of rows) {
      const current = row.querySelector('.meta .tick');
      if (!current || row.dataset.from !== 'user') continue;
      const state = id <= readUpTo ? 'read' : 'sent';
      if (current.dataset.state !== state) current.replaceWith(tick(state));
    }
  }

  function fileUrl(fileId) {
    return `/control/files/${encodeURIComponent(fileId)}`;
  }

  function renderPhoto(sizes) {
    const sorted = [...sizes].sort((a, b) => a.width - b.width);
    const shown = sorted.find((s) => s.width >= 640) || sorted[sorted.length - 1];
    const largest = sorted[sorted.length - 1];
    const img = document.createElement('img');
    img.className = 'photo';
    img.alt = t().photo;
    img.decoding = 'async';
    img.src = fileUrl(shown.file_id);
    if (shown.width > 0 && shown.height > 0) {
      img.width = shown.width;
      img.height = shown.height;
      img.style.aspectRatio = `${shown.width} / ${shown.height}`;
    }
    img.addEventListener('click', () => openViewer(fileUrl(largest.file_id)));
    img.addEventListener('load', () => {
      if (nearBottom(400)) scrollToBottom(false);
    });
    const frame = document.createElement('div');
    frame.className = 'photo-frame';
    frame.append(img);
    return frame;
  }

  function renderDocument(doc) {
    const link = document.createElement('a');
    link.className = 'document';
    link.href = fileUrl(doc.file_id);
    link.download = doc.file_name || 'file';
    const badge = document.createElement('span');
    badge.className = 'file-icon';
    badge.append(icon('i-file', 'icon'));
    const info = document.createElement('span');
    const name = document.createElement('div');
    name.className = 'file-name';
    name.textContent = doc.file_name || 'file';
    const size = document.createElement('div');
    size.className = 'file-size';
    size.textContent = `${Math.max(1, Math.round((doc.file_size || 0) / 1024))} KB`;
    info.append(name, size);
    link.append(badge, info);
    return link;
  }

  function renderInvoice(invoice) {
    const box = document.createElement('div');
    const title = document.createElement('div');
    title.className = 'invoice-title';
    title.textContent = invoice.title;
    const text = document.createElement('div');
    text.className = 'invoice-text';
    text.textContent = invoice.description;
    const amount = document.createElement('div');
    amount.className = 'invoice-price';
    amount.textContent = price(invoice.currency, invoice.total_amount);
    if (invoice.currency === 'XTR') amount.classList.add('stars');
    box.append(title, text, amount);
    return box;
  }

  function price(currency, amount) {
    // A text star: the demo cannot count on an emoji font being installed.
    if (currency === 'XTR') return `★ ${amount}`;
    try {
      const format = new Intl.NumberFormat(locale(), { style: 'currency', currency });
      const digits = format.resolvedOptions().maximumFractionDigits;
      return format.format(amount / 10 ** digits);
    } catch (_) {
      return `${amount} ${currency}`;
    }
  }

  // ---------- formatted text ----------

  /** Appends `text` to `parent`, formatted by Bot API entities (UTF-16 offsets, as JS strings). */
  function renderEntities(parent, text, entities) {
    const list = (Array.isArray(entities) ? entities : [])
      .filter((e) => Number.isInteger(e.offset) && Number.isInteger(e.length) && e.length > 0)
      .map((e) => ({ ...e, end: Math.min(text.length, e.offset + e.length) }))
      .filter((e) => e.offset >= 0 && e.offset < e.end)
      .sort((a, b) => a.offset - b.offset || b.end - a.end);
    build(parent, text, list, 0, text.length, true);
  }

  /** Entity types whose content is shown literally, never linkified. */
  const LITERAL = new Set(['code', 'pre', 'text_link', 'url', 'email', 'bot_command', 'mention', 'text_mention', 'hashtag', 'cashtag']);

  function build(parent, text, list, start, end, autolink) {
    const plain = (from, to) => appendPlain(parent, text.slice(from, to), autolink);
    let pos = start;
    let i = 0;
    while (i < list.length) {
      const entity = list[i];
      const from = Math.max(entity.offset, pos);
      const to = Math.min(entity.end, end);
      let j = i + 1;
      const inner = [];
      while (j < list.length && list[j].offset < to) {
        inner.push({ ...list[j], end: Math.min(list[j].end, to) });
        j += 1;
      }
      i = j;
      if (from >= to) continue;
      if (from > pos) plain(pos, from);
      const [outer, holder] = entityElement(entity, text.slice(from, to));
      build(holder, text, inner, from, to, autolink && !LITERAL.has(entity.type));
      parent.append(outer);
      pos = to;
    }
    if (pos < end) plain(pos, end);
  }

  /**
   * Telegram marks /commands and links in every message; the stand-in only
   * does it for what users type, so the client finds them in unformatted text.
   */
  const AUTO_LINK = /\/[A-Za-z0-9_]{1,32}(?:@[A-Za-z0-9_]{3,32})?(?![A-Za-z0-9_@/])|https?:\/\/[^\s<>"]*[^\s<>".,;:!?)\]'»]/g;

  function appendPlain(parent, str, autolink) {
    if (!autolink) {
      parent.append(str);
      return;
    }
    let pos = 0;
    for (const match of str.matchAll(AUTO_LINK)) {
      const token = match[0];
      const isCommand = token.startsWith('/');
      if (isCommand && match.index > 0 && !/[\s(]/.test(str[match.index - 1])) continue;
      if (match.index > pos) parent.append(str.slice(pos, match.index));
      const entity = { type: isCommand ? 'bot_command' : 'url' };
      const [node] = entityElement(entity, token);
      node.textContent = token;
      parent.append(node);
      pos = match.index + token.length;
    }
    if (pos < str.length) parent.append(str.slice(pos));
  }

  function entityElement(entity, content) {
    const make = (tag, className) => {
      const node = document.createElement(tag);
      if (className) node.className = className;
      return [node, node];
    };
    switch (entity.type) {
      case 'bold': return make('strong');
      case 'italic': return make('em');
      case 'underline': return make('u');
      case 'strikethrough': return make('s');
      case 'code': return make('code');
      case 'blockquote':
      case 'expandable_blockquote': return make('blockquote');
      case 'pre': {
        const pre = document.createElement('pre');
        const code = document.createElement('code');
        if (entity.language) code.dataset.language = entity.language;
        pre.append(code);
        return [pre, code];
      }
      case 'spoiler': {
        const [node] = make('span', 'spoiler');
        node.addEventListener('click', () => node.classList.add('revealed'));
        return [node, node];
      }
      case 'text_link': return linkElement(entity.url);
      case 'url': return linkElement(/^[a-z][a-z0-9+.-]*:/i.test(content) ? content : `https://${content}`);
      case 'email': return linkElement(`mailto:${content}`);
      case 'bot_command': {
        const [node] = make('a', 'command');
        node.href = '#';
        node.addEventListener('click', (event) => {
          event.preventDefault();
          sendText(content);
        });
        return [node, node];
      }
      case 'mention':
      case 'text_mention':
      case 'hashtag':
      case 'cashtag':
        return make('span', 'mention');
      default: return make('span');
    }
  }

  function safeUrl(raw) {
    try {
      const url = new URL(String(raw));
      if (['http:', 'https:', 'mailto:', 'tg:'].includes(url.protocol)) return url;
    } catch (_) {
      // Not a URL at all.
    }
    return null;
  }

  function linkElement(raw) {
    const url = safeUrl(raw);
    if (!url) {
      const plain = document.createElement('span');
      return [plain, plain];
    }
    const link = document.createElement('a');
    link.href = url.href;
    link.target = '_blank';
    link.rel = 'noopener noreferrer';
    link.addEventListener('click', (event) => {
      if (handleSpecialLink(url)) event.preventDefault();
    });
    return [link, link];
  }

  /** Telegram links the client handles itself: invoices and deep links to this bot. */
  function handleSpecialLink(url) {
    if (!['t.me', 'telegram.me'].includes(url.hostname)) return false;
    const path = decodeURIComponent(url.pathname.slice(1));
    if (path.startsWith('$')) {
      payInvoice({ invoice_link: url.href }, t().payLink);
      return true;
    }
    if (profile.username && path.toLowerCase() === profile.username.toLowerCase()) {
      const payload = url.searchParams.get('start');
      sendText(payload ? `/start ${payload}` : '/start');
      return true;
    }
    return false;
  }

  // ---------- inline keyboards ----------

  function renderKeyboard(message) {
    const markup = message.reply_markup;
    let keyboard = markup && Array.isArray(markup.inline_keyboard) ? markup.inline_keyboard : null;
    if (message.invoice && !keyboard) {
      // Telegram draws a Pay button under an invoice that has none.
      const total = price(message.invoice.currency, message.invoice.total_amount);
      keyboard = [[{ text: `${t().pay} ${total}`, pay: true }]];
    }
    if (!keyboard || !keyboard.length) return null;
    const box = document.createElement('div');
    box.className = 'kb';
    for (const line of keyboard) {
      if (!Array.isArray(line) || !line.length) continue;
      const row = document.createElement('div');
      row.className = 'kb-row';
      for (const button of line) {
        row.append(renderButton(message, button));
      }
      box.append(row);
    }
    return box;
  }

  function renderButton(message, button) {
    const node = document.createElement('button');
    node.type = 'button';
    node.className = 'kb-btn';
    node.textContent = String(button.text || '');
    if (typeof button.callback_data === 'string') {
      node.dataset.callback = button.callback_data;
      node.addEventListener('click', () => pressButton(message.message_id, button.callback_data, node));
    } else if (button.pay) {
      node.addEventListener('click', () => {
        payInvoice({ message_id: message.message_id }, t().payConfirm(price(message.invoice.currency, message.invoice.total_amount)));
      });
    } else if (typeof button.url === 'string') {
      node.append(icon('i-link', 'corner'));
      node.addEventListener('click', () => openLink(button.url));
    } else {
      node.addEventListener('click', () => showToast(t().unavailable));
    }
    return node;
  }

  async function openLink(raw) {
    const url = safeUrl(raw);
    if (!url || handleSpecialLink(url)) return;
    if (await confirmModal('', `${t().openLink}\n${url.href}`, t().ok, t().cancel)) {
      window.open(url.href, '_blank', 'noopener,noreferrer');
    }
  }

  async function pressButton(messageId, data, node) {
    const mine = session;
    node.classList.add('pending');
    try {
      const pressed = await api('POST', '/control/callbacks', { user_id: user.id, message_id: messageId, data });
      const answer = await waitFor(async () => {
        const a = await api('GET', `/control/callbacks/${encodeURIComponent(pressed.callback_query_id)}`);
        return a.answered ? a : null;
      }, mine);
      if (mine !== session) return;
      if (!answer) {
        showToast(t().noAnswer);
      } else {
        if (answer.text) {
          if (answer.show_alert) await confirmModal('', answer.text, t().ok, '');
          else showToast(answer.text);
        }
        if (answer.url) openLink(answer.url);
      }
    } catch (error) {
      if (mine === session) showToast(error.message);
    } finally {
      node.classList.remove('pending');
    }
  }

  /** Polls `check` until it returns something, for at most ANSWER_WAIT_MS. */
  async function waitFor(check, mine) {
    const deadline = Date.now() + ANSWER_WAIT_MS;
    while (Date.now() < deadline && mine === session) {
      const result = await check();
      if (result) return result;
      await sleep(250);
    }
    return null;
  }

  async function payInvoice(which, question) {
    const mine = session;
    if (!(await confirmModal(t().payTitle, question, t().pay, t().cancel))) return;
    try {
      const query = await api('POST', '/control/pre_checkout', { user_id: user.id, ...which });
      const status = await waitFor(async () => {
        const s = await api('GET', `/control/pre_checkout/${encodeURIComponent(query.pre_checkout_query_id)}`);
        return s.answered && (s.paid || s.ok === false) ? s : null;
      }, mine);
      if (mine !== session) return;
      if (!status) showToast(t().noAnswer);
      else if (status.ok === false) await confirmModal(t().payTitle, status.error_message || t().payDeclined, t().ok, '');
    } catch (error) {
      if (mine === session) showToast(error.message);
    }
  }

  // ---------- layout: day pills, runs of bubbles, the empty chat ----------

  function dayKey(seconds) {
    const d = new Date(seconds * 1000);
    return `${d.getFullYear()}-${d.getMonth()}-${d.getDate()}`;
  }

  function dayLabel(seconds) {
    const d = new Date(seconds * 1000);
    const now = new Date();
    const yesterday = new Date(now.getTime() - 86400000);
    if (dayKey(seconds) === dayKey(now.getTime() / 1000)) return t().today;
    if (dayKey(seconds) === dayKey(yesterday.getTime() / 1000)) return t().yesterday;
    const options = { day: 'numeric', month: 'long' };
    if (d.getFullYear() !== now.getFullYear()) options.year = 'numeric';
    return d.toLocaleDateString(locale(), options);
  }

  function refreshLayout() {
    for (const pill of el.messages.querySelectorAll('.day')) pill.remove();
    const list = [...el.messages.querySelectorAll('.row')];
    let lastDay = null;
    list.forEach((row, index) => {
      const day = dayKey(Number(row.dataset.date));
      if (day !== lastDay) {
        const pill = document.createElement('div');
        pill.className = 'day';
        pill.textContent = dayLabel(Number(row.dataset.date));
        row.before(pill);
        lastDay = day;
      }
      const side = (r) => (r && !r.classList.contains('service') ? r.dataset.from : null);
      const prev = list[index - 1];
      const next = list[index + 1];
      const sameDay = (r) => r && dayKey(Number(r.dataset.date)) === day;
      row.classList.toggle('first', !(sameDay(prev) && side(prev) === side(row)));
      row.classList.toggle('last', !(sameDay(next) && side(next) === side(row)));
    });
    refreshTicks();
    renderEmptyState();
  }

  function renderEmptyState() {
    const empty = rows.size === 0 && outbox.length === 0;
    el.empty.classList.toggle('hidden', !(empty && loaded));
    el.startBtn.classList.toggle('hidden', !(empty && loaded));
    el.composer.classList.toggle('hidden', empty && loaded);
  }

  // ---------- scrolling ----------

  function nearBottom(margin = 120) {
    const c = el.chat;
    return c.scrollHeight - c.scrollTop - c.clientHeight < margin;
  }

  function scrollToBottom(smooth) {
    el.chat.scrollTo({ top: el.chat.scrollHeight, behavior: smooth ? 'smooth' : 'auto' });
    unread = 0;
    renderFab();
  }

  function renderFab() {
    const away = !nearBottom(200);
    el.toBottom.classList.toggle('hidden', !away);
    el.unread.classList.toggle('hidden', unread === 0);
    el.unread.textContent = String(unread);
  }

  // ---------- header ----------

  function initial(name) {
    const letter = [...String(name || '?').trim()][0] || '?';
    return letter.toUpperCase();
  }

  function renderHeader() {
    el.botName.textContent = profile.first_name;
    for (const avatar of el.botAvatars) avatar.textContent = initial(profile.first_name);
    document.title = `${profile.first_name} · Vitte demo`;
    el.meAvatar.textContent = initial(user.first_name);
    el.meName.textContent = user.first_name;
    el.me.title = t().me(user.first_name, user.id);
    renderStatus();
  }

  function renderStatus() {
    let text = t().bot;
    let className = 'status';
    if (!connected) {
      text = t().connecting;
      className += ' busy dots';
    } else if (Date.now() < typingUntil) {
      text = t().typing;
      className += ' typing dots';
    }
    if (el.status.textContent !== text) el.status.textContent = text;
    if (el.status.className !== className) el.status.className = className;
  }

  function renderLanguage() {
    const ui = t();
    document.documentElement.lang = user.language_code;
    el.langCode.textContent = user.language_code.toUpperCase();
    el.langToggle.title = ui.language;
    el.newUser.title = ui.newUser;
    el.newUser.setAttribute('aria-label', ui.newUser);
    el.input.placeholder = ui.placeholder;
    el.menuLabel.textContent = ui.menu;
    el.startBtn.textContent = ui.start;
    el.emptyTitle.textContent = ui.emptyTitle;
    el.emptyText.textContent = ui.emptyText;
    el.modalCancel.textContent = ui.cancel;
    renderHeader();
  }

  // ---------- sending ----------

  async function sendText(raw) {
    const text = String(raw);
    if (!text.trim()) return;
    const mine = session;
    const entry = { id: null, text, row: null };
    const draft = {
      message_id: 0,
      from: { is_bot: false },
      date: Math.floor(Date.now() / 1000),
      text,
      entities: [],
    };
    entry.row = renderRow(draft, { appear: true, status: 'pending' });
    outbox.push(entry);
    el.messages.append(entry.row);
    refreshLayout();
    scrollToBottom(true);
    try {
      const injected = await api('POST', '/control/messages', {
        user_id: user.id,
        first_name: user.first_name,
        language_code: user.language_code,
        text,
      });
      if (mine !== session || !outbox.includes(entry)) return;
      entry.id = injected.message_id;
      entry.row.dataset.messageId = String(injected.message_id);
      entry.row.querySelector('.tick').replaceWith(tick('sent'));
    } catch (_) {
      if (mine !== session) return;
      outbox = outbox.filter((e) => e !== entry);
      const failed = renderRow(draft, { status: 'failed' });
      entry.row.replaceWith(failed);
      failed.addEventListener('click', () => {
        failed.remove();
        refreshLayout();
        sendText(text);
      }, { once: true });
      refreshLayout();
    }
  }

  function submitInput() {
    const text = el.input.value;
    if (!text.trim()) return;
    el.input.value = '';
    autosize();
    hideSuggest();
    sendText(text);
    el.input.focus();
  }

  function autosize() {
    el.input.style.height = 'auto';
    el.input.style.height = `${Math.min(el.input.scrollHeight, 180)}px`;
    el.send.disabled = !el.input.value.trim();
  }

  // ---------- the command menu and slash suggestions ----------

  let suggestions = [];
  let active = -1;

  function showSuggest(list) {
    suggestions = list;
    active = list.length ? 0 : -1;
    el.suggest.replaceChildren();
    list.forEach(([command, description], index) => {
      const item = document.createElement('button');
      item.type = 'button';
      item.className = 'cmd';
      item.setAttribute('role', 'option');
      if (index === active) item.classList.add('active');
      const name = document.createElement('span');
      name.className = 'cmd-name';
      name.textContent = `/${command}`;
      const desc = document.createElement('span');
      desc.className = 'cmd-desc';
      desc.textContent = description;
      item.append(name, desc);
      item.addEventListener('click', () => {
        hideSuggest();
        el.input.value = '';
        autosize();
        sendText(`/${command}`);
      });
      el.suggest.append(item);
    });
    el.suggest.classList.toggle('hidden', list.length === 0);
  }

  function hideSuggest() {
    suggestions = [];
    active = -1;
    el.suggest.classList.add('hidden');
  }

  function moveActive(step) {
    if (!suggestions.length) return;
    active = (active + step + suggestions.length) % suggestions.length;
    [...el.suggest.children].forEach((item, index) => item.classList.toggle('active', index === active));
  }

  function updateSlashSuggest() {
    const value = el.input.value;
    const match = /^\/([a-z0-9_]*)$/i.exec(value);
    if (!match) {
      if (!el.suggest.dataset.menu) hideSuggest();
      return;
    }
    delete el.suggest.dataset.menu;
    const prefix = match[1].toLowerCase();
    showSuggest(commands().filter(([command]) => command.startsWith(prefix)));
  }

  async function toggleMenu() {
    if (!el.suggest.classList.contains('hidden') && el.suggest.dataset.menu) {
      delete el.suggest.dataset.menu;
      hideSuggest();
      return;
    }
    el.suggest.dataset.menu = '1';
    showSuggest(commands());
    await loadProfile();
    if (el.suggest.dataset.menu) showSuggest(commands());
  }

  // ---------- small dialogs ----------

  let toastTimer = null;

  function showToast(text) {
    el.toast.textContent = text;
    el.toast.classList.remove('hidden');
    clearTimeout(toastTimer);
    toastTimer = setTimeout(() => el.toast.classList.add('hidden'), 3500);
  }

  let modalDone = null;

  function confirmModal(title, text, ok, cancel) {
    if (modalDone) modalDone(false);
    el.modalTitle.textContent = title;
    el.modalText.textContent = text;
    el.modalOk.textContent = ok;
    el.modalCancel.textContent = cancel;
    el.modal.classList.remove('hidden');
    el.modalOk.focus();
    return new Promise((resolve) => {
      modalDone = (value) => {
        modalDone = null;
        el.modal.classList.add('hidden');
        resolve(value);
      };
    });
  }

  function openViewer(src) {
    el.viewerImg.src = src;
    el.viewer.classList.remove('hidden');
  }

  function closeViewer() {
    el.viewer.classList.add('hidden');
    el.viewerImg.removeAttribute('src');
  }

  // ---------- switching users ----------

  function becomeUser(next, sayStart) {
    session += 1;
    if (pollAbort) pollAbort.abort();
    user = next;
    saveUser();
    resetView();
    profile = { ...profile, commands: [] };
    hideSuggest();
    renderLanguage();
    renderEmptyState();
    loadProfile();
    pollLoop(session);
    if (sayStart) sendText('/start');
  }

  // ---------- wiring ----------

  el.composer.addEventListener('submit', (event) => {
    event.preventDefault();
    submitInput();
  });

  el.input.addEventListener('input', () => {
    autosize();
    updateSlashSuggest();
  });

  el.input.addEventListener('keydown', (event) => {
    if (suggestions.length && (event.key === 'ArrowDown' || event.key === 'ArrowUp')) {
      event.preventDefault();
      moveActive(event.key === 'ArrowDown' ? 1 : -1);
      return;
    }
    if (suggestions.length && event.key === 'Tab' && active >= 0) {
      event.preventDefault();
      el.input.value = `/${suggestions[active][0]}`;
      autosize();
      return;
    }
    if (event.key === 'Enter' && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      if (suggestions.length && active >= 0 && el.input.value.startsWith('/')) {
        el.input.value = `/${suggestions[active][0]}`;
      }
      submitInput();
    }
    if (event.key === 'Escape') hideSuggest();
  });

  el.menuBtn.addEventListener('click', (event) => {
    event.stopPropagation();
    toggleMenu();
  });

  document.addEventListener('click', (event) => {
    if (!el.suggest.contains(event.target) && event.target !== el.input) {
      delete el.suggest.dataset.menu;
      hideSuggest();
    }
  });

  el.startBtn.addEventListener('click', () => {
    el.startBtn.classList.add('hidden');
    sendText('/start');
  });

  el.langToggle.addEventListener('click', () => {
    user.language_code = user.language_code === 'ru' ? 'en' : 'ru';
    saveUser();
    renderLanguage();
    refreshLayout();
    loadProfile();
  });

  el.newUser.addEventListener('click', () => becomeUser(makeUser(user.language_code), true));

  el.chat.addEventListener('scroll', () => {
    if (nearBottom()) unread = 0;
    renderFab();
  }, { passive: true });

  el.toBottom.addEventListener('click', () => scrollToBottom(true));

  el.modalOk.addEventListener('click', () => modalDone && modalDone(true));
  el.modalCancel.addEventListener('click', () => modalDone && modalDone(false));
  el.modal.addEventListener('click', (event) => {
    if (event.target === el.modal && modalDone) modalDone(false);
  });
  el.viewer.addEventListener('click', closeViewer);
  el.viewerClose.addEventListener('click', closeViewer);

  document.addEventListener('keydown', (event) => {
    if (event.key !== 'Escape') return;
    if (modalDone) modalDone(false);
    closeViewer();
    hideSuggest();
  });

  setInterval(renderStatus, 250);

  const saved = loadUser();
  if (saved) {
    becomeUser(saved, false);
  } else {
    becomeUser(makeUser(browserLanguage()), true);
  }
  el.input.focus();
})();
