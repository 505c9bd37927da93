"""The words mail clients write around a reply, in the languages we have seen them in.

Role: data only, read by ``worker.ingest.derive.reply_lines`` (what a line is),
``worker.ingest.derive.signature`` (where a signature starts), ``reply`` (whether a subject
marks a forward or a reply) and ``loop_guard`` (a person answering an auto-reply).
Everything is lower case and matched as plain substrings, prefixes or set members, never
as regular expressions, so a new word costs nothing at scan time and cannot make a match
slower.

Sources: the attribution and header forms that Gmail, Outlook, Apple Mail, Thunderbird and
the mobile clients write in each language (checked against their localisations and
public test mails), plus the tables of mail-parser-reply (MIT) and talon (Apache-2.0),
whose ideas (not code) this follows.
"""

from __future__ import annotations

from typing import Final

# The verb of an "On <date>, <name> wrote:" line (any place in it: German and Dutch put
# it before the name). Stems cover the gendered forms: "napisa" is Polish napisał(a),
# Croatian napisao, Slovenian napisal; "написа" is Russian, Ukrainian, Bulgarian, Serbian.
ATTRIBUTION_VERBS: Final = (
    "wrote",  # en
    "writes",  # en (mailing lists)
    "'s message of",  # en, Sup ("Excerpts from Ana's message of <date>:")
    "schrieb",  # de
    "geschrieben",  # de ("hat ... geschrieben")
    "écrit",  # fr ("a écrit")
    "escribió",  # es
    "escreveu",  # pt
    "scritto",  # it ("ha scritto")
    "schreef",  # nl
    "geschreven",  # nl Apple Mail and iOS ("heeft X geschreven:")
    "het volgende",  # nl Gmail ("schreef X het volgende:")
    "napisa",  # pl, hr, sl, bs
    "pisze",  # pl Thunderbird ("W dniu ..., X pisze:")
    "napsal",  # cs
    "napísal",  # sk
    "написа",  # ru, uk, bg, sr
    "пишет",  # ru
    "пише",  # uk
    "skrev",  # sv, da, no
    "kirjoitti",  # fi
    "írta",  # hu
    "yazdı",  # tr
    "a scris",  # ro
    "έγραψε",  # el
    "va escriure",  # ca
    "idatzi zuen",  # eu
    "rašė",  # lt
    "rakstīja",  # lv
    "kirjutas",  # et
    "menulis",  # id, ms
    "đã viết",  # vi
    "כתב",  # he
    "كتب",  # ar
    "写道",  # zh (simplified)
    "寫道",  # zh (traditional)
    "のメッセージ",  # ja (Outlook, Thunderbird)
    "書きました",  # ja
    "작성",  # ko ("님이 작성:")
    "เขียน",  # th
)

# Labels of the header block Outlook (and webmail forwards) write above a quoted or
# forwarded message: "From:" starts one, any of OTHER_LABELS follows it.
FROM_LABELS: Final = frozenset(
    {
        "from", "von", "de", "da", "van", "od", "от", "від", "fra", "från", "frå",
        "lähettäjä", "feladó", "kimden", "发件人", "寄件者", "差出人", "보낸 사람",
        "보낸사람", "afzender", "remitente", "expéditeur", "mittente", "odesílatel",
        "nadawca", "отправитель", "od koga", "de la", "αποστολέας", "saatja", "siuntėjas",
    }
)  # fmt: skip
OTHER_LABELS: Final = frozenset(
    {
        # en
        "sent", "date", "to", "subject", "cc", "bcc", "reply-to",
        # de
        "gesendet", "datum", "an", "betreff", "kopie",
        # fr
        "envoyé", "à", "objet", "cc ",
        # es, pt
        "enviado", "enviado el", "fecha", "para", "asunto", "enviada em", "enviado em",
        "assunto", "data", "cc:",
        # it
        "inviato", "a", "oggetto",
        # nl
        "verzonden", "aan", "onderwerp",
        # pl
        "wysłano", "do", "temat", "dw",
        # cs, sk
        "odesláno", "komu", "předmět", "odoslané", "predmet",
        # ru, uk
        "отправлено", "дата", "кому", "тема", "копия", "надіслано", "копія",
        # sv, da, no
        "skickat", "till", "ämne", "kopia", "sendt", "til", "emne", "kopi",
        # fi
        "lähetetty", "vastaanottaja", "aihe", "päivämäärä", "kopio",
        # hu
        "elküldve", "címzett", "tárgy", "dátum", "másolatot kap",
        # tr
        "gönderildi", "gönderilme", "kime", "konu", "tarih", "bilgi",
        # ro
        "trimis", "către", "subiect",
        # el
        "στάλθηκε", "προς", "θέμα", "ημερομηνία",
        # zh, ja, ko
        "发送时间", "收件人", "主题", "日期", "抄送", "寄件日期", "收件者", "主旨",
        "送信日時", "宛先", "件名", "日付", "보낸 날짜", "받는 사람", "제목", "참조",
    }
)  # fmt: skip

# Words that make a separator line ("---------- Forwarded message ---------") or an
# Apple Mail lead-in ("Begin forwarded message:") a forward rather than a quote.
FORWARD_WORDS: Final = (
    "forward",  # en: forwarded message, begin forwarded message
    "weitergeleitet",  # de
    "transféré",  # fr
    "réexpédié",  # fr (Apple Mail)
    "reenviado",  # es
    "reencaminhad",  # pt-PT
    "encaminhad",  # pt-BR
    "inoltrat",  # it
    "doorgestuurd",  # nl
    "przekazan",  # pl
    "przesłan",  # pl
    "пересланное",  # ru
    "переадресованного",  # ru (Apple Mail)
    "пересланий",  # uk
    "переслане",  # uk
    "videresendt",  # da, no
    "vidarebefordrat",  # sv
    "välitetty",  # fi
    "edelleenlähetetty",  # fi
    "továbbított",  # hu
    "přeposlan",  # cs
    "preposlan",  # sk
    "iletilen",  # tr
    "redirecționat",  # ro
    "προωθημένο",  # el
    "转发",  # zh
    "轉寄",  # zh (traditional)
    "転送",  # ja
    "전달",  # ko
)
# "-----Original Message-----" is Outlook's quote separator; Thunderbird writes its
# forwards with "-------- Original Message --------" (eight dashes and spaces).
# A separator under which nothing is the sender's: Mailman's "-------------- next part
# --------------" over the parts it scrubbed.
SCRUBBED_PART_WORDS: Final = ("next part",)
ORIGINAL_MESSAGE_WORDS: Final = (
    "original message",
    "ursprüngliche nachricht",
    "message d'origine",
    "mensaje original",
    "mensagem original",
    "messaggio originale",
    "oorspronkelijk bericht",
    "oryginalna wiadomość",
    "wiadomość oryginalna",
    "исходное сообщение",
    "оригінальне повідомлення",
    "opprinnelig melding",
    "oprindelig meddelelse",
    "ursprungligt meddelande",
    "alkuperäinen viesti",
    "eredeti üzenet",
    "původní zpráva",
    "orijinal mesaj",
    "mesaj original",
    "原始邮件",
    "元のメッセージ",
    "원본 메시지",
)

# Lines a phone or a webmail app adds under the text ("Sent from my iPhone"), as
# prefixes of the lower-cased line.
SENT_FROM: Final = (
    "sent from my ",
    "sent from outlook",
    "sent from mail for windows",
    "sent from yahoo mail",
    "sent from samsung",
    "sent via ",
    "get outlook for ",
    "von meinem ",  # de: "Von meinem iPhone gesendet"
    "gesendet von meinem ",
    "gesendet mit ",
    "envoyé de mon ",
    "envoyé depuis mon ",
    "enviado desde mi ",
    "enviado do meu ",
    "enviado de meu ",
    "enviado a partir do meu ",
    "inviato da ",
    "verzonden vanaf mijn ",
    "verstuurd vanaf mijn ",
    "wysłane z mojego ",
    "wysłane z iphone",  # pl iOS ("Wysłane z iPhone'a")
    "wysłano z ",
    "odesláno z ",
    "отправлено с моего ",
    "отправлено с iphone",  # ru iOS
    "отправлено из ",
    "надіслано з мого ",
    "skickat från min ",
    "sendt fra min ",
    "lähetetty ",
    "iphone-ról küldve",
    "iphone'umdan gönderildi",
    "从我的",
    "iphoneから送信",
)

# The closing line of a sign-off ("Best regards,"), compared with the whole lower-cased
# line without its trailing punctuation. Only formal closings: "Thanks!" at the end of a
# short reply is often the reply itself, so thanks count only with a trailing comma
# (THANKS_WITH_COMMA) and a name under them.
VALEDICTIONS: Final = frozenset(
    {
        "best regards", "kind regards", "regards", "warm regards", "best wishes", "best",
        "all the best", "cheers", "sincerely", "yours sincerely", "yours truly",
        "mit freundlichen grüßen", "mit freundlichen grüssen", "freundliche grüße",
        "viele grüße", "beste grüße", "liebe grüße", "grüße", "gruß", "lg", "vg", "mfg",
        "cordialement", "bien cordialement", "salutations", "bien à vous", "amitiés",
        "saludos", "un saludo", "saludos cordiales", "atentamente", "cordialmente",
        "atenciosamente", "abraços", "cumprimentos", "cordiali saluti", "saluti",
        "distinti saluti", "met vriendelijke groet", "vriendelijke groet", "groeten",
        "groetjes", "mvg", "pozdrawiam", "z poważaniem", "pozdrowienia", "с уважением",
        "всего доброго", "з повагою", "med vennlig hilsen", "vennlig hilsen", "hilsen",
        "mvh", "med venlig hilsen", "venlig hilsen", "med vänliga hälsningar",
        "vänliga hälsningar", "hälsningar", "ystävällisin terveisin", "terveisin",
        "s pozdravem", "üdvözlettel", "saygılarımla", "με εκτίμηση", "cu stimă",
        "此致", "敬具", "よろしくお願いします", "감사합니다",
    }
)  # fmt: skip
THANKS_WITH_COMMA: Final = frozenset(
    {
        "thanks,", "thank you,", "many thanks,", "thanks again,", "danke,", "vielen dank,",
        "merci,", "gracias,", "obrigado,", "obrigada,", "grazie,", "bedankt,", "dziękuję,",
        "спасибо,", "дякую,", "tack,", "takk,", "kiitos,",
    }
)  # fmt: skip

# Subject prefixes of a forward.
FORWARD_SUBJECTS: Final = (
    "fwd:", "fw:", "wg:", "tr:", "rv:", "enc:", "i:", "doorst:", "vs:", "vb:", "pd:",
    "fwd :", "tr :", "pf:", "továbbítás:", "ил:", "пересл:", "转发:", "転送:",
)  # fmt: skip
# Subject prefixes of a reply: an Outlook header block under new text is the answered
# message under these, and a forwarded one under any other subject (a forward keeps or
# rewrites the subject, a reply marks it).
REPLY_SUBJECTS: Final = (
    "re:", "re[", "re :", "aw:", "sv:", "antw:", "odp:", "ynt:", "r:", "ris:", "rif:",
    "res:", "ref:", "ha:", "απ:", "отв:", "відп:", "回复:", "答复:", "回覆:", "返信:", "رد:",
)  # fmt: skip
