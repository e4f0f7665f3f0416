"""A small dict-based i18n for the diner and staff pages (zh-CN and en)."""

from __future__ import annotations

from typing import Any

LANGS = ("zh", "en")

STRINGS: dict[str, tuple[str, str]] = {
    # key: (zh, en)
    "order": ("点餐", "Order"),
    "table": ("桌号", "Table"),
    "lang_switch": ("English", "中文"),
    "categories": ("菜品分类", "Categories"),
    "hide_allergens": ("隐藏含以下过敏原的菜品", "Hide dishes containing"),
    "apply": ("应用筛选", "Apply filter"),
    "allergens": ("过敏原", "Allergens"),
    "options": ("选项与备注", "Options and note"),
    "note": ("备注", "Note"),
    "qty": ("数量", "Quantity"),
    "add": ("加入", "Add"),
    "sold_out": ("已估清", "Sold out"),
    "left": ("剩余", "left"),
    "cart": ("本桌购物车", "Table cart"),
    "cart_empty": ("购物车是空的，从菜单中添加菜品。", "The cart is empty; add dishes from the menu."),
    "remove": ("删除", "Remove"),
    "by": ("点菜人", "by"),
    "total": ("合计", "Total"),
    "send": ("下单送厨房", "Send to kitchen"),
    "send_hint": ("本桌所有人的菜品会一起送出；可多次加菜。",
                  "Sends everyone's dishes at this table; you can add more rounds later."),
    "rounds": ("已下单", "Your orders"),
    "round": ("第{n}轮", "Round {n}"),
    "addon": ("加菜", "add-on"),
    "status_sent": ("已发送", "Sent"),
    "status_received": ("厨房已接单", "Kitchen received"),
    "status_cooking": ("制作中", "Cooking"),
    "status_served": ("已上菜", "Served"),
    "status_void": ("已取消", "Cancelled"),
    "comp": ("赠送", "On the house"),
    "rush": ("催菜", "Rush"),
    "service": ("服务", "Service"),
    "call_waiter": ("呼叫服务员", "Call waiter"),
    "request_bill": ("请求结账", "Request bill"),
    "task_waiter": ("呼叫服务员", "Waiter called"),
    "task_bill": ("结账请求", "Bill requested"),
    "task_rush": ("催菜", "Rush requested"),
    "task_pending": ("已通知，请稍候", "sent, waiting for staff"),
    "task_acked": ("服务员已收到", "staff on the way"),
    "nickname": ("昵称或座位（可选，不需要真实姓名）", "Nickname or seat (optional, no real names needed)"),
    "save": ("保存", "Save"),
    "you_are": ("你的昵称", "You are"),
    "refresh": ("刷新状态", "Refresh status"),
    "sent_ok": ("已送厨房：第{n}轮。", "Sent to the kitchen: round {n}."),
    "added_ok": ("已加入购物车。", "Added to the table cart."),
    "table_closed": ("本桌尚未开台，请联系服务员开台后点餐。",
                     "This table is not open for ordering yet. Please ask a member of staff."),
    "clearing": ("本桌已结账，正在清台，请稍候或联系服务员。",
                 "This table has been paid and is being cleared. Please wait or ask a member of staff."),
    "paid": ("已结账，谢谢光临！", "Paid, thank you!"),
    "error": ("出错了", "Something went wrong"),
    "back": ("返回", "Back"),
    "offline_note": ("本页面由店内系统提供，断网也能点餐。",
                     "Served by the store itself: ordering works even when the internet is down."),
    "welcome": ("欢迎", "Welcome"),
    "portal_scan": ("请扫描餐桌上的二维码点餐。", "Scan the QR code on your table to order."),
    "queue": ("排队取号并预点餐", "Join the queue and pre-order"),
    "queue_no": ("排队号", "Queue number"),
    "queue_wait": ("请等候叫号；已点菜品会在入座后送厨房。",
                   "Please wait to be called; your dishes go to the kitchen once you are seated."),
    "party": ("人数", "Party size"),
    "take_number": ("取号", "Take a number"),
    "preorder_saved": ("预点菜品已保存", "Pre-order saved"),
    "queue_title": ("排队取号", "Queue"),
    "queue_intro": ("暂无空桌？取号排队，等候时可先点菜，入座后再送厨房。",
                    "No table yet? Take a number and build your order while you wait; it goes to the kitchen "
                    "once you are seated."),
    "queue_nick": ("昵称（可选，无需真实姓名或电话）", "Nickname (optional; no real name or phone number needed)"),
    "q_taken": ("取号成功：{n}", "Your number: {n}"),
    "q_party": ("{n}人", "party of {n}"),
    "q_waiting": ("等候中", "Waiting"),
    "q_ahead": ("前面还有{n}桌", "{n} ahead of you"),
    "q_next": ("下一位就是您", "You are next"),
    "q_wait": ("预计等候约{m}分钟", "Estimated wait: about {m} min"),
    "q_called": ("已叫号，请到前台！", "Called: please come to the desk!"),
    "q_seated": ("已入座：{t}号桌", "Seated at table {t}"),
    "q_go_table": ("打开本桌点餐页，确认后送厨房", "Open your table's page to check your order and send it"),
    "q_leave": ("取消排队", "Leave the queue"),
    "q_left": ("您已取消排队（{n}），预点菜品已删除。如需用餐，请重新取号。",
               "You left the queue ({n}); your pre-order was dropped. Take a new number if you want a table."),
    "q_skipped": ("您的号码{n}已过号。如仍需用餐，请重新取号。",
                  "Your number {n} was skipped. Take a new number if you still want a table."),
    "preorder_cart": ("预点菜品", "Your pre-order"),
    "preorder_hint": ("入座后，预点菜品会成为本桌购物车，可修改后再送厨房。",
                      "Once you are seated your pre-order becomes your table's cart: change it if you like, "
                      "then send it to the kitchen."),
}


def t(key: str, lang: str, **kw: Any) -> str:
    """Translate ``key`` to ``lang`` (zh or en), formatting ``{placeholders}``."""
    pair = STRINGS.get(key)
    if pair is None:
        return key
    text = pair[0] if lang == "zh" else pair[1]
    return text.format(**kw) if kw else text


def pick(zh: str, en: str, lang: str) -> str:
    """Return the zh or en variant of a bilingual value."""
    return zh if lang == "zh" else en


def money(cents: int, currency: str = "CNY") -> str:
    """Format cents for display (¥ for CNY)."""
    sign = "-" if cents < 0 else ""
    symbol = "¥" if currency == "CNY" else f"{currency} "
    return f"{sign}{symbol}{abs(cents) / 100:.2f}"
